//! `--usb-gadget`: the whole USB gadget set-up through configfs, and its
//! removal.
//!
//! [`Gadget::create`] makes `usb_gadget/feedfs` with the pid.codes ids, a
//! configuration holding one FunctionFS function (`ffs.feedfs`) and mounts
//! that function at `/dev/usb-ffs/feedfs`; the caller writes the
//! descriptors ([`crate::link::usb::Ffs::start`]) and then [`Gadget::bind`]s it to
//! a UDC. Dropping it unbinds the UDC, lets `ep0` close, unmounts
//! FunctionFS and removes
//! every directory it made, in reverse order; a step that fails is logged
//! and the rest still run.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::{bail, Context};
use feedfs_protocol::usb::{PRODUCT_ID, VENDOR_ID};

use crate::link::usb::Ep0Closer;

const CONFIGFS: &str = "/sys/kernel/config";
const NAME: &str = "feedfs";
const FFS_DIR: &str = "/dev/usb-ffs/feedfs";

/// A configfs gadget this process made.
pub struct Gadget {
    root: PathBuf,
    ffs: PathBuf,
    /// What to undo, in the order it was done.
    made: Vec<Made>,
    ep0: Option<Ep0Closer>,
}

enum Made {
    Dir(PathBuf),
    Link(PathBuf),
    Mount(PathBuf),
}

impl Gadget {
    /// Create the gadget and mount its FunctionFS (needs root, configfs and
    /// the libcomposite and usb_f_fs modules).
    pub fn create() -> anyhow::Result<Gadget> {
        let base = Path::new(CONFIGFS).join("usb_gadget");
        if !base.is_dir() {
            mount_configfs()?;
        }
        if !base.is_dir() {
            bail!(
                "{} is missing: load the libcomposite module (modprobe libcomposite)",
                base.display()
            );
        }
        let root = base.join(NAME);
        if root.exists() {
            bail!(
                "a gadget {} already exists (another feedfs-device, or one left by a crash: \
                 remove it, or use --usb-ffs with it)",
                root.display()
            );
        }
        let mut g = Gadget {
            root: root.clone(),
            ffs: PathBuf::from(FFS_DIR),
            made: Vec::new(),
            ep0: None,
        };
        g.mkdir(&root)?;
        write(&root.join("idVendor"), &format!("{VENDOR_ID:#06x}"))?;
        write(&root.join("idProduct"), &format!("{PRODUCT_ID:#06x}"))?;
        let strings = root.join("strings/0x409");
        g.mkdir(&strings)?;
        write(&strings.join("manufacturer"), "feedfs")?;
        write(&strings.join("product"), "feedfs device")?;
        write(&strings.join("serialnumber"), &serial())?;
        let config = root.join("configs/c.1");
        g.mkdir(&config)?;
        g.mkdir(&config.join("strings/0x409"))?;
        write(&config.join("strings/0x409/configuration"), "feedfs")?;
        write(&config.join("MaxPower"), "250")?;
        let function = root.join(format!("functions/ffs.{NAME}"));
        g.mkdir(&function)?;
        let link = config.join(format!("ffs.{NAME}"));
        std::os::unix::fs::symlink(&function, &link).with_context(|| {
            format!(
                "cannot link {} into {}",
                function.display(),
                config.display()
            )
        })?;
        g.made.push(Made::Link(link));
        let ffs = g.ffs.clone();
        if !ffs.is_dir() {
            fs::create_dir_all(&ffs).with_context(|| format!("cannot create {}", ffs.display()))?;
            g.made.push(Made::Dir(ffs.clone()));
        }
        mount(NAME, &ffs, "functionfs")?;
        g.made.push(Made::Mount(ffs));
        Ok(g)
    }

    /// Where the function's FunctionFS is mounted.
    pub fn ffs_dir(&self) -> &Path {
        &self.ffs
    }

    /// Bind the gadget to `udc`, or to the first UDC of the system.
    pub fn bind(&self, udc: Option<&str>) -> anyhow::Result<()> {
        let udc = match udc {
            Some(u) => u.to_string(),
            None => first_udc()?,
        };
        let file = self.root.join("UDC");
        write(&file, &udc)?;
        log::info!("USB gadget bound to {udc}");
        Ok(())
    }

    /// Close this FunctionFS's `ep0` on removal, once unbinding wakes it.
    pub fn adopt(&mut self, ep0: Ep0Closer) {
        self.ep0 = Some(ep0);
    }
}

impl Drop for Gadget {
    fn drop(&mut self) {
        if let Some(ep0) = &self.ep0 {
            ep0.ask();
        }
        // Unbinding an unbound gadget is harmless; always try it first.
        if let Err(e) = fs::write(self.root.join("UDC"), "\n") {
            log::warn!("gadget clean-up: cannot unbind: {e}");
        }
        if let Some(ep0) = &self.ep0 {
            ep0.wait(Duration::from_secs(2));
        }
        while let Some(m) = self.made.pop() {
            let (what, result) = match &m {
                Made::Mount(dir) => ("unmount", umount(dir)),
                Made::Link(link) => ("unlink", fs::remove_file(link)),
                Made::Dir(dir) => ("remove", fs::remove_dir(dir)),
            };
            if let Err(e) = result {
                log::warn!("gadget clean-up: cannot {what}: {e}");
            }
        }
        log::info!("USB gadget removed");
    }
}

impl Gadget {
    fn mkdir(&mut self, dir: &Path) -> anyhow::Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        self.made.push(Made::Dir(dir.to_path_buf()));
        Ok(())
    }
}

fn write(path: &Path, value: &str) -> anyhow::Result<()> {
    fs::write(path, value).with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

/// The first UDC in /sys/class/udc.
fn first_udc() -> anyhow::Result<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/udc")
        .context("no /sys/class/udc: this kernel has no USB device controller")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .next()
        .context("no USB device controller in /sys/class/udc (is the UDC driver loaded?)")
}

/// A serial number that tells devices apart: the machine id when there is
/// one, else the host name.
fn serial() -> String {
    let id = fs::read_to_string("/etc/machine-id")
        .or_else(|_| fs::read_to_string("/proc/sys/kernel/hostname"))
        .unwrap_or_default();
    let id: String = id
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    if id.is_empty() {
        "feedfs".into()
    } else {
        id
    }
}

fn mount_configfs() -> anyhow::Result<()> {
    mount("none", Path::new(CONFIGFS), "configfs")
        .context("configfs is not mounted and cannot be mounted")
}

fn mount(source: &str, target: &Path, fstype: &str) -> anyhow::Result<()> {
    nix::mount::mount(
        Some(source),
        target,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("cannot mount {fstype} at {}", target.display()))
}

/// Unmount lazily: `ep0` stays open until this process exits.
fn umount(target: &Path) -> io::Result<()> {
    nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH)?;
    Ok(())
}
