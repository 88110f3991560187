//! The link's read side: a thread that decodes the device's frames into
//! owned [`Event`]s, counting and keeping what the peer sends before its
//! `Hello` (the [`Preamble`]), and a watch on a handshake stuck in a write.
//!
//! The reader decides nothing about the session: it passes on messages,
//! frames it dropped as damaged (the protocol's `Skip`/`Resync`, with what
//! came before the `Hello` while none has come) and malformed messages,
//! and its end: a clean end of stream, a cut inside a frame or a fatal
//! frame error. The state machine ([`super::machine`]) judges them. The
//! reader stops at its end or when nobody listens any more.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use feedfs_protocol::io::{FrameReader, ReadError};
use feedfs_protocol::message::{OwnedMessage, ParseError};
use feedfs_protocol::{FrameError, Message, Recovery, MAGIC};

/// What the peer had sent, none of it a Hello, when a frame was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub bytes: u64,
    /// What came before the first thing that looks like a frame ([`quote`]).
    pub quote: String,
}

/// What the reader thread (or a signal) reports.
#[derive(Debug)]
pub enum Event {
    Msg(OwnedMessage),
    /// A frame dropped as damaged; `before_hello` while no Hello has come.
    Damaged {
        error: FrameError,
        before_hello: Option<Seen>,
    },
    /// A frame whose payload is not a valid message of its type.
    Malformed(ParseError),
    /// The reader stopped: `None` at a clean end of stream.
    End(Option<ReadError>),
    /// SIGINT, SIGTERM or SIGHUP arrived ([`crate::send::stop`]).
    Signal(i32),
}

/// Bytes of the peer's first output kept to quote.
const PREAMBLE_HEAD: usize = 256;

/// What the peer sent before its Hello.
#[derive(Debug, Default)]
pub struct Preamble {
    pub bytes: u64,
    pub head: Vec<u8>,
    /// The Hello came: nothing more is counted.
    pub done: bool,
}

impl Preamble {
    /// What came before the first thing that looks like a frame.
    pub fn quote(&self) -> String {
        let end = self
            .head
            .windows(MAGIC.len())
            .position(|w| w == MAGIC)
            .unwrap_or(self.head.len());
        quote(
            &self.head[..end],
            self.bytes > end as u64 && end == self.head.len(),
        )
    }
}

/// Bytes a peer printed, for a message: as text (escaped) when they are
/// text, else in hex; `…` when there was more.
pub fn quote(bytes: &[u8], more: bool) -> String {
    const TEXT_MAX: usize = 120;
    let chunks: Vec<_> = bytes.utf8_chunks().collect();
    // Text, but for a character cut at the end of what was kept.
    let text = chunks.iter().enumerate().all(|(i, c)| {
        (c.invalid().is_empty() || (i + 1 == chunks.len() && c.invalid().len() < 4))
            && !c.valid().contains('\0')
    });
    let (mut out, cut) = if text {
        let valid: String = chunks.iter().map(|c| c.valid()).collect();
        let escaped: String = valid.chars().flat_map(char::escape_debug).collect();
        let cut = escaped.chars().count() > TEXT_MAX;
        let kept: String = escaped.chars().take(TEXT_MAX).collect();
        (format!("\"{kept}\""), cut)
    } else {
        let hex: Vec<String> = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
        (format!("bytes {}", hex.join(" ")), bytes.len() > 32)
    };
    if more || cut {
        out.push('…');
    }
    out
}

/// The link's read side, counting and keeping what arrives before the Hello.
struct Watched<R> {
    inner: R,
    preamble: Arc<Mutex<Preamble>>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut p) = self.preamble.lock() {
            if !p.done {
                p.bytes += n as u64;
                let room = PREAMBLE_HEAD.saturating_sub(p.head.len()).min(n);
                p.head.extend_from_slice(&buf[..room]);
            }
        }
        Ok(n)
    }
}

/// The reader thread's loop: decode frames until the link ends or nobody listens.
pub fn read_events(read: impl Read, tx: Sender<Event>, preamble: Arc<Mutex<Preamble>>) {
    let mut reader = FrameReader::new(Watched {
        inner: read,
        preamble: preamble.clone(),
    });
    // Damaged frames before the Hello: a banner, or not feedfs at all.
    let mut noise = 0u64;
    loop {
        let event = match reader.next_frame() {
            Ok(Some(frame)) => match Message::parse(frame) {
                Ok(m) => {
                    if let Message::Hello { .. } = m {
                        hello_came(&preamble, noise);
                        noise = 0;
                    }
                    Event::Msg(m.into_owned())
                }
                Err(e) => Event::Malformed(e),
            },
            Ok(None) => Event::End(None),
            Err(ReadError::Frame(error))
                if matches!(error.recovery(), Recovery::Skip | Recovery::Resync) =>
            {
                let before_hello = preamble.lock().ok().and_then(|p| {
                    (!p.done).then(|| Seen {
                        bytes: p.bytes,
                        quote: p.quote(),
                    })
                });
                noise += u64::from(before_hello.is_some());
                Event::Damaged {
                    error,
                    before_hello,
                }
            }
            Err(e) => Event::End(Some(e)),
        };
        let end = matches!(event, Event::End(_));
        if tx.send(event).is_err() || end {
            return;
        }
    }
}

/// The Hello arrived: stop counting, and say once what came before it.
fn hello_came(preamble: &Mutex<Preamble>, noise: u64) {
    let Ok(mut p) = preamble.lock() else { return };
    if !p.done && noise > 0 {
        log::warn!(
            "the device side printed {} before its Hello; skipped (nothing but feedfs \
             should reach its stdout)",
            p.quote()
        );
    }
    p.done = true;
}

/// How long past the handshake timeout a session may stay stuck without a Hello.
pub const STUCK_GRACE: Duration = Duration::from_secs(2);

/// Set when the session it watches is over.
pub struct Over(Arc<AtomicBool>);

impl Drop for Over {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// End the process when the session is still without a Hello
/// [`STUCK_GRACE`] past its handshake timeout. The session's own loop
/// bounds every wait but one: writing the manifest to a peer that reads
/// nothing (a manifest larger than the pipe holds), which blocks.
pub fn watch_handshake(preamble: Arc<Mutex<Preamble>>, timeout: Duration) -> Over {
    let over = Arc::new(AtomicBool::new(false));
    let seen = over.clone();
    let spawned = std::thread::Builder::new()
        .name("handshake-watch".into())
        .spawn(move || {
            std::thread::sleep(timeout + STUCK_GRACE);
            let hello = preamble.lock().map_or(true, |p| p.done);
            if !hello && !seen.load(Ordering::SeqCst) {
                eprintln!(
                    "feedfs-host: error: no Hello from the device within {}s, and it reads \
                     nothing the host sends; is the device side `feedfs-device mount … --stdio`?",
                    timeout.as_secs_f64()
                );
                std::process::exit(1);
            }
        });
    if let Err(e) = spawned {
        log::debug!("no handshake watch: {e}");
    }
    Over(over)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_peer_printed_is_quoted_as_text_or_hex() {
        assert_eq!(
            quote(b"garbage\ngarbage\n", true),
            "\"garbage\\ngarbage\\n\"…"
        );
        assert_eq!(quote(b"hello", false), "\"hello\"");
        // A character cut where the kept bytes end is still text.
        assert_eq!(quote("héllo".as_bytes().split_at(2).0, true), "\"h\"…");
        let long = "x".repeat(500);
        let q = quote(long.as_bytes(), false);
        assert!(
            q.ends_with('…') && q.len() == 120 + 2 + '…'.len_utf8(),
            "{q}"
        );
        assert_eq!(quote(&[0x00, 0xff, 0x10], false), "bytes 00 ff 10");
        assert_eq!(
            quote(&[0xff; 40], false),
            format!("bytes {}…", ["ff"; 32].join(" "))
        );
    }

    #[test]
    fn the_quote_of_a_preamble_stops_where_a_frame_starts() {
        let mut head = b"Welcome\n".to_vec();
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(b"rest of a frame");
        let p = Preamble {
            bytes: 4096,
            head,
            done: false,
        };
        assert_eq!(p.quote(), "\"Welcome\\n\"");
        let p = Preamble {
            bytes: 4096,
            head: vec![b'x'; PREAMBLE_HEAD],
            done: false,
        };
        assert!(p.quote().ends_with('…'), "more came than was kept");
    }
}
