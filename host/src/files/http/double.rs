//! Test double: a tiny HTTP/1.1 server on 127.0.0.1 that answers Range
//! requests from bytes in memory with an ETag, keeps connections alive,
//! counts the requests and the body bytes it sends, and can cut every body short (a fault
//! the real nginx of the end-to-end tests cannot be made to show).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// A running double; it serves until the test process ends.
pub struct Double {
    pub url: String,
    /// Body bytes sent so far.
    pub sent: Arc<AtomicU64>,
    /// Requests answered so far.
    pub requests: Arc<AtomicU64>,
    /// Send half of each body, then close the connection.
    pub short: Arc<AtomicBool>,
}

impl Double {
    pub fn start(data: Vec<u8>) -> Double {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/obj.img", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let short = Arc::new(AtomicBool::new(false));
        let data = Arc::new(data);
        let (s, q, f) = (sent.clone(), requests.clone(), short.clone());
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (data, s, q, f) = (data.clone(), s.clone(), q.clone(), f.clone());
                thread::spawn(move || serve(conn, &data, &s, &q, &f));
            }
        });
        Double {
            url,
            sent,
            requests,
            short,
        }
    }
}

fn serve(conn: TcpStream, data: &[u8], sent: &AtomicU64, requests: &AtomicU64, short: &AtomicBool) {
    let mut out = conn.try_clone().unwrap();
    let mut lines = BufReader::new(conn);
    loop {
        let mut range = None;
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(r) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                let (a, b) = r.split_once('-').unwrap();
                range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let (a, b) = range.unwrap_or((0, data.len() - 1));
        let b = b.min(data.len() - 1);
        let body = &data[a..=b];
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\n\
             Content-Length: {}\r\nETag: \"v1\"\r\n\r\n",
            data.len(),
            body.len()
        );
        let cut = short.load(Ordering::SeqCst);
        let body = if cut { &body[..body.len() / 2] } else { body };
        // Counted before it goes out: a client may have read it all, and its
        // test looked at the count, before a write returns here.
        sent.fetch_add(body.len() as u64, Ordering::SeqCst);
        if out.write_all(head.as_bytes()).is_err() || out.write_all(body).is_err() {
            return;
        }
        if cut {
            return;
        }
    }
}
