//! The client's TCP connections: ureq's connector chain with our own TCP
//! step, which sets `TCP_NODELAY` and, after each request is sent, asks
//! for `TCP_QUICKACK`, so that the answer is acknowledged as it is read.
//!
//! Why: a server that writes an answer's head and its body in two writes
//! with Nagle's algorithm on (s3s-fs does, as hyper does by default) sends
//! the body only once the head is acknowledged. Sending a request right
//! after an answer puts Linux's ACKs for that connection in interactive
//! mode, delayed by up to 40 ms, so on a kept-alive connection a 4 KiB
//! Range read took 42 ms instead of 0.5. `TCP_QUICKACK` leaves that mode
//! until the next send: the head is acknowledged at once and the server's
//! wait ends in microseconds, whatever the server. One `setsockopt` per
//! request, before its first read (one before every read cost the stream
//! half again as much system time, for nothing). Where the option does not
//! exist this is a plain TCP connection.
//!
//! Everything else is as ureq's own TCP connector does it: each resolved
//! address in turn within the connect timeout, the per-read and per-write
//! timeouts, reads interrupted by a signal retried, and a socket the agent
//! can shut down.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};
use ureq::Timeout;

/// The TCP step of the client's connector chain; see the module documentation.
#[derive(Debug, Default)]
pub struct QuickAckConnector;

/// A socket the agent can shut down while it is in use.
#[derive(Debug)]
struct Socket(TcpStream);

impl ShutdownHandle for Socket {
    fn shutdown(&self) {
        // Already closed or shut down: nothing left to do.
        drop(self.0.shutdown(Shutdown::Both));
    }
}

/// One connection: the socket, ureq's buffers, the timeouts last set.
pub struct QuickAckTransport {
    socket: Arc<Socket>,
    buffers: LazyBuffers,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// A request went out since the last read: ask for quick ACKs first.
    sent: bool,
}

impl fmt::Debug for QuickAckTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuickAckTransport")
            .field("peer", &self.socket.0.peer_addr().ok())
            .finish()
    }
}

/// `e` as ureq's error: a socket timeout (`EAGAIN` under `SO_RCVTIMEO`)
/// is the timeout `reason`.
fn io_error(e: io::Error, reason: Timeout) -> ureq::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ureq::Error::Timeout(reason),
        _ => ureq::Error::Io(e),
    }
}

/// The time left of `timeout`, `None` for no limit; an exhausted one is its error.
fn left(timeout: NextTimeout) -> Result<Option<Duration>, ureq::Error> {
    if timeout.after.is_zero() {
        return Err(ureq::Error::Timeout(timeout.reason));
    }
    Ok(timeout.not_zero().map(|t| *t))
}

/// Connect to the first of `addrs` that answers within `timeout`.
fn connect(addrs: &[SocketAddr], timeout: NextTimeout) -> Result<TcpStream, ureq::Error> {
    let deadline = left(timeout)?.map(|t| Instant::now() + t);
    let mut last = None;
    for addr in addrs {
        let attempt = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(t) if !t.is_zero() => TcpStream::connect_timeout(addr, t),
                _ => return Err(ureq::Error::Timeout(Timeout::Connect)),
            },
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(io_error(e, Timeout::Connect)),
        }
    }
    Err(last.unwrap_or_else(|| {
        ureq::Error::Io(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "no address to connect to",
        ))
    }))
}

/// Ask the kernel to acknowledge what arrives at once, until the next
/// send. A socket that refuses is read as it is: the answer only comes later.
fn quick_ack(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    drop(socket2::SockRef::from(stream).set_tcp_quickack(true));
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

impl<In: Transport> Connector<In> for QuickAckConnector {
    type Out = Either<In, QuickAckTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // A connection made before this step (a proxy's) is used as it is.
        if let Some(transport) = chained {
            return Ok(Some(Either::A(transport)));
        }
        let stream = connect(&details.addrs, details.timeout)?;
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let config = details.config;
        let transport = QuickAckTransport {
            socket: Arc::new(Socket(stream)),
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
            read_timeout: None,
            write_timeout: None,
            sent: false,
        };
        let handle: Weak<dyn ShutdownHandle> = Arc::downgrade(&transport.socket) as _;
        (details.register_shutdown)(handle)?;
        Ok(Some(Either::B(transport)))
    }
}

impl Transport for QuickAckTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        let limit = left(timeout)?;
        let stream = &self.socket.0;
        if limit != self.write_timeout {
            stream.set_write_timeout(limit)?;
            self.write_timeout = limit;
        }
        self.sent = true;
        let mut out = stream;
        out.write_all(&self.buffers.output()[..amount])
            .map_err(|e| io_error(e, timeout.reason))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        let limit = left(timeout)?;
        let stream = &self.socket.0;
        if limit != self.read_timeout {
            stream.set_read_timeout(limit)?;
            self.read_timeout = limit;
        }
        if std::mem::take(&mut self.sent) {
            quick_ack(stream);
        }
        let started = Instant::now();
        let mut input = stream;
        let buf = self.buffers.input_append_buf();
        let amount = loop {
            match input.read(buf) {
                // Linux does not restart a read under SO_RCVTIMEO after a signal.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if limit.is_some_and(|l| started.elapsed() >= l) {
                        return Err(ureq::Error::Timeout(timeout.reason));
                    }
                }
                other => break other.map_err(|e| io_error(e, timeout.reason))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        // Open when a read would block: nothing unasked for, no end of stream.
        let stream = &self.socket.0;
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut probe = stream;
        let open = matches!(
            probe.read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        );
        open && stream.set_nonblocking(false).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_timeouts_are_ureq_timeouts_and_other_errors_stay_io() {
        let e = io_error(io::ErrorKind::WouldBlock.into(), Timeout::RecvBody);
        assert!(matches!(e, ureq::Error::Timeout(Timeout::RecvBody)), "{e}");
        let e = io_error(io::ErrorKind::TimedOut.into(), Timeout::Connect);
        assert!(matches!(e, ureq::Error::Timeout(Timeout::Connect)), "{e}");
        let e = io_error(io::ErrorKind::ConnectionReset.into(), Timeout::RecvBody);
        assert!(
            matches!(&e, ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionReset),
            "{e}"
        );
    }

    #[test]
    fn no_address_is_a_refusal_and_a_closed_port_is_tried() {
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_secs(5),
            reason: Timeout::Connect,
            per_read: None,
            per_write: None,
        };
        let e = connect(&[], timeout).unwrap_err();
        assert!(
            matches!(&e, ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused),
            "{e}"
        );
        // A port nothing listens on: bound, then released.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = connect(&[closed], timeout).unwrap_err();
        assert!(matches!(e, ureq::Error::Io(_)), "{e}");
    }

    /// The double writes each head and body apart with Nagle on, as s3s-fs
    /// does: without quick ACKs most reads after the first few waited for
    /// the client's delayed ACK (40 ms and more each).
    #[test]
    fn kept_alive_reads_do_not_wait_for_a_delayed_ack() {
        use crate::files::http::double::Double;
        use crate::files::http::{Client, ClientOptions, Remote};

        let obj: Vec<u8> = (0..64 * 4096)
            .map(|i: usize| (i * 13 + i / 4096) as u8)
            .collect();
        let d = Double::start(obj.clone());
        let client = Arc::new(Client::new(&ClientOptions::default()).unwrap());
        let remote = Remote::probe(&client, &d.url).unwrap();
        let mut times = Vec::new();
        let mut buf = vec![0u8; 4096];
        for k in 0..40 {
            let at = (k * 37 % 64) * 4096;
            let start = Instant::now();
            remote.read_retrying(&mut buf, at as u64).unwrap();
            times.push(start.elapsed());
            assert!(buf[..] == obj[at..at + 4096], "read {k} at {at}");
        }
        times.sort();
        let median = times[times.len() / 2];
        assert!(median < Duration::from_millis(20), "median {median:?}");
    }
}
