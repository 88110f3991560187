//! `feedfs-device attach`: hand a new link to the daemon already serving a
//! store, so a new host resumes a transfer without an unmount.
//!
//! A mounted daemon listens on `STORE/link.sock` (a Unix socket, mode 0600).
//! `attach --stdio` connects, passes its stdin and stdout descriptors with
//! SCM_RIGHTS, and stays until that link ends, so a host running it through
//! `adb shell` or ssh keeps its pipe. One link feeds a store at a time: an
//! attach while another link is up is refused with a message saying so.
//!
//! On the socket, after the descriptors: the daemon answers one line, `ok`
//! or `refused: WHY`; when an accepted link ends it writes one more line,
//! `ended` or `failed: WHY`, and closes.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use anyhow::{bail, Context};
use sendfd::{RecvWithFd, SendWithFd};

use crate::link::{grow_pipe, LinkIo};

/// The socket's name in the store.
pub const SOCKET: &str = "link.sock";

/// A link for the link thread, and whom to tell when it ends.
pub struct Incoming {
    pub link: LinkIo,
    pub done: Option<Sender<Result<(), String>>>,
}

/// The one link a store may have: taken by whoever hands a link over,
/// released by the link thread when that link ends.
#[derive(Default)]
pub struct LinkSlot {
    taken: Mutex<bool>,
    freed: Condvar,
}

impl LinkSlot {
    /// Take the slot if it is free.
    pub fn try_take(&self) -> bool {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        !std::mem::replace(&mut *taken, true)
    }

    /// Wait until the slot is free, then take it.
    pub fn take(&self) {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        while *taken {
            taken = self.freed.wait(taken).unwrap_or_else(|p| p.into_inner());
        }
        *taken = true;
    }

    pub fn release(&self) {
        *self.taken.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.freed.notify_all();
    }
}

/// The slot, shared by the link thread and whoever hands links over.
pub type Busy = Arc<LinkSlot>;

/// Listen on `store/link.sock` and hand each accepted link to `links`.
/// The socket goes when the returned guard drops.
pub fn listen(store: &Path, links: Sender<Incoming>, busy: Busy) -> anyhow::Result<SocketGuard> {
    let path = store.join(SOCKET);
    // We hold the store's lock: a socket left here is a dead daemon's.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    thread::Builder::new()
        .name("attach".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => {
                        if let Err(e) = take(c, &links, &busy) {
                            log::warn!("attach: {e:#}");
                        }
                    }
                    Err(e) => log::warn!("attach: accept failed: {e}"),
                }
            }
        })?;
    Ok(SocketGuard(path))
}

/// Removes the socket file.
pub struct SocketGuard(PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One attach: take its descriptors, refuse it if a link is up, else queue
/// it and answer the client when the link ends.
fn take(mut conn: UnixStream, links: &Sender<Incoming>, busy: &Busy) -> anyhow::Result<()> {
    let mut tag = [0u8; 1];
    let mut fds = [-1; 2];
    let (_, nfds) = conn.recv_with_fd(&mut tag, &mut fds)?;
    // Own whatever arrived, so it is closed on every path.
    let owned: Vec<OwnedFd> = fds[..nfds]
        .iter()
        // SAFETY: sendfd hands back raw descriptors (no owned form exists);
        // each was just received and belongs to nobody else.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    let [input, output]: [OwnedFd; 2] = match owned.try_into() {
        Ok(pair) if tag[0] == b'L' => pair,
        _ => {
            writeln!(conn, "refused: expected a link's two descriptors")?;
            bail!("a malformed attach request");
        }
    };
    if !busy.try_take() {
        writeln!(
            conn,
            "refused: a link is already feeding this store; only one at a time"
        )?;
        log::warn!("attach refused: a link is up");
        return Ok(());
    }
    let (input, output) = (File::from(input), File::from(output));
    grow_pipe(&input);
    grow_pipe(&output);
    let (done, ended) = mpsc::channel();
    let link = LinkIo {
        input: Box::new(input),
        output,
        zlp_packet: None,
        name: "attach (a new host's pipe)".into(),
    };
    if links
        .send(Incoming {
            link,
            done: Some(done),
        })
        .is_err()
    {
        busy.release();
        writeln!(conn, "refused: the daemon is stopping")?;
        return Ok(());
    }
    writeln!(conn, "ok")?;
    thread::Builder::new()
        .name("attach-wait".into())
        .spawn(move || {
            let line = match ended.recv() {
                Ok(Ok(())) => "ended".to_string(),
                Ok(Err(e)) => format!("failed: {}", e.replace('\n', " ")),
                Err(_) => "failed: the daemon stopped".to_string(),
            };
            let _ = writeln!(conn, "{line}");
        })?;
    Ok(())
}

/// The client: pass our stdin and stdout to the daemon on `store`, then
/// wait until the link ends. `Ok` when it ended cleanly.
pub fn attach_stdio(store: &Path) -> anyhow::Result<()> {
    let path = store.join(SOCKET);
    let conn = UnixStream::connect(&path).with_context(|| {
        format!(
            "no feedfs-device is serving {} (cannot connect to {}); start one with \
             `feedfs-device mount MNT --store {} ...`",
            store.display(),
            path.display(),
            store.display()
        )
    })?;
    let fds = [std::io::stdin().as_raw_fd(), std::io::stdout().as_raw_fd()];
    conn.send_with_fd(b"L", &fds)
        .context("cannot pass the link to the daemon")?;
    let mut lines = BufReader::new(&conn).lines();
    let answer = lines.next().transpose()?.unwrap_or_default();
    if let Some(why) = answer.strip_prefix("refused: ") {
        bail!("the daemon refused the link: {why}");
    }
    if answer != "ok" {
        bail!("unexpected answer from the daemon: {answer:?}");
    }
    log::info!("link handed to the daemon serving {}", store.display());
    // The daemon has its own copies: ours must not keep the host's pipe
    // open after the daemon lets go of it.
    release_stdio();
    match lines.next().transpose()?.as_deref() {
        Some("ended") => Ok(()),
        Some(line) => bail!("{}", line.strip_prefix("failed: ").unwrap_or(line)),
        None => bail!("the daemon stopped while serving the link"),
    }
}

/// Point stdin and stdout at /dev/null.
fn release_stdio() {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        // Best effort: a standard descriptor left as it was only keeps the
        // starter's pipe open a little longer.
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
}
