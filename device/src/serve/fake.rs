//! A fake reply for the unit tests of serving: it records how each read
//! was answered, and a reply dropped unanswered.

use std::sync::{Arc, Mutex};

use fuser::Errno;

use crate::serve::pending::Reply;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Data(Vec<u8>),
    Error(Errno),
    Dropped,
}

/// Every answer so far, as (read's tag, answer), in order.
#[derive(Debug, Clone, Default)]
pub struct Answers(Arc<Mutex<Vec<(u32, Answer)>>>);

impl Answers {
    /// A reply for the read tagged `tag`.
    pub fn reply(&self, tag: u32) -> Fake {
        Fake {
            tag,
            answers: self.clone(),
            answered: false,
        }
    }

    pub fn all(&self) -> Vec<(u32, Answer)> {
        self.0.lock().unwrap().clone()
    }
}

/// A reply that records how read `tag` was answered.
#[derive(Debug)]
pub struct Fake {
    pub tag: u32,
    answers: Answers,
    answered: bool,
}

impl Fake {
    fn record(&mut self, a: Answer) {
        self.answered = true;
        self.answers.0.lock().unwrap().push((self.tag, a));
    }
}

impl Reply for Fake {
    fn data(mut self, bytes: &[u8]) {
        self.record(Answer::Data(bytes.to_vec()));
    }
    fn error(mut self, errno: Errno) {
        self.record(Answer::Error(errno));
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if !self.answered {
            self.record(Answer::Dropped);
        }
    }
}
