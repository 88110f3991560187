//! Which devices a push feeds, from its link options: one command per
//! `--exec` (or per serial of a `{serial}` template), this process's own
//! stdin and stdout, the named USB devices, the only one attached, or
//! every one (`--all`). Pure: options in, devices out.

use std::path::{Path, PathBuf};

use crate::cli::PushArgs;

/// The placeholder of an `--exec` template.
pub const SERIAL: &str = "{serial}";
/// The placeholder of a `--record` path with several devices.
pub const DEVICE: &str = "{device}";

/// How to reach one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// `sh -c` this command.
    Exec(String),
    /// This process's stdin and stdout.
    Stdio,
    /// The USB device with this serial, or the only one attached.
    Usb(Option<String>),
}

/// One device of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its serial, or its number from 1 among the commands.
    pub name: String,
    pub reach: Reach,
}

impl Device {
    /// How messages name it: its serial, or `device N`.
    pub fn label(&self) -> String {
        match &self.reach {
            Reach::Exec(_) if self.name.parse::<u32>().is_ok() => format!("device {}", self.name),
            _ => self.name.clone(),
        }
    }
}

/// The devices of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// These, known from the start.
    Listed(Vec<Device>),
    /// Every attached feedfs device on USB (`--all`).
    EveryUsb,
}

/// A link option that cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("--serials fills {SERIAL} in one --exec command; {0} commands were given")]
    SerialsNeedOneCommand(usize),
    #[error("the --exec command has no {SERIAL} for --serials to fill: {0:?}")]
    NoPlaceholder(String),
    #[error("the --exec command holds {SERIAL}, but no --serials list fills it: {0:?}")]
    NoSerials(String),
    #[error("no link given: use --exec CMD, --stdio or --usb")]
    NoLink,
    #[error(
        "several devices need a record file each: put {DEVICE} in the --record path \
         (it becomes each device's name), e.g. --record 'push-{DEVICE}.tsv'"
    )]
    OneRecordForMany,
}

/// The devices `args` names.
pub fn targets(args: &PushArgs) -> Result<Targets, TargetError> {
    if args.usb {
        if args.all {
            return Ok(Targets::EveryUsb);
        }
        let devices = if args.serial.is_empty() {
            vec![Device {
                name: "usb".into(),
                reach: Reach::Usb(None),
            }]
        } else {
            args.serial.iter().map(|s| usb(s)).collect()
        };
        return Ok(Targets::Listed(devices));
    }
    if args.stdio {
        return Ok(Targets::Listed(vec![Device {
            name: "stdio".into(),
            reach: Reach::Stdio,
        }]));
    }
    if !args.serials.is_empty() {
        let [command] = &args.exec[..] else {
            return Err(TargetError::SerialsNeedOneCommand(args.exec.len()));
        };
        if !command.contains(SERIAL) {
            return Err(TargetError::NoPlaceholder(command.clone()));
        }
        let devices = args.serials.iter().map(|serial| Device {
            name: serial.clone(),
            reach: Reach::Exec(command.replace(SERIAL, serial)),
        });
        return Ok(Targets::Listed(devices.collect()));
    }
    if let Some(command) = args.exec.iter().find(|c| c.contains(SERIAL)) {
        return Err(TargetError::NoSerials(command.clone()));
    }
    if args.exec.is_empty() {
        return Err(TargetError::NoLink);
    }
    let devices = args.exec.iter().enumerate().map(|(i, command)| Device {
        name: (i + 1).to_string(),
        reach: Reach::Exec(command.clone()),
    });
    Ok(Targets::Listed(devices.collect()))
}

/// The USB device with `serial`.
pub fn usb(serial: &str) -> Device {
    Device {
        name: serial.to_string(),
        reach: Reach::Usb(Some(serial.to_string())),
    }
}

/// Whether these targets may be more than one device.
pub fn several(targets: &Targets) -> bool {
    match targets {
        Targets::Listed(d) => d.len() > 1,
        Targets::EveryUsb => true,
    }
}

/// Several devices need [`DEVICE`] in the record path.
pub fn check_record(path: &Path, several: bool) -> Result<(), TargetError> {
    match several && !path.to_string_lossy().contains(DEVICE) {
        true => Err(TargetError::OneRecordForMany),
        false => Ok(()),
    }
}

/// The record path of `device`: `path` itself for a single device, else
/// with [`DEVICE`] replaced by its name (refused without one).
pub fn record_path(path: &Path, device: &Device, several: bool) -> Result<PathBuf, TargetError> {
    check_record(path, several)?;
    let text = path.to_string_lossy();
    if !text.contains(DEVICE) {
        return Ok(path.to_path_buf());
    }
    // A name is a serial or a number: nothing in it may climb out of the
    // folder, and two names never share a file.
    let safe: String = device
        .name
        .chars()
        .map(|c| match c {
            '/' => "%2F".to_string(),
            '%' => "%25".to_string(),
            '\0' => "%00".to_string(),
            c => c.to_string(),
        })
        .collect();
    Ok(PathBuf::from(text.replace(DEVICE, &safe)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};

    fn args(line: &[&str]) -> PushArgs {
        let mut full = vec!["feedfs-host"];
        full.extend_from_slice(line);
        match Cli::parse_checked(full).unwrap().command {
            Command::Push(p) => *p,
            _ => panic!("not a push"),
        }
    }

    fn listed(line: &[&str]) -> Vec<Device> {
        match targets(&args(line)).unwrap() {
            Targets::Listed(d) => d,
            Targets::EveryUsb => panic!("every device"),
        }
    }

    #[test]
    fn one_device_per_command_or_serial() {
        let d = listed(&["push", "--exec", "a", "--exec", "b", "x"]);
        assert_eq!(d.len(), 2);
        assert_eq!((d[1].name.as_str(), d[1].label()), ("2", "device 2".into()));
        assert_eq!(d[1].reach, Reach::Exec("b".into()));
        let d = listed(&[
            "push",
            "--exec",
            "adb -s {serial} shell feedfs-device mount /data/m-{serial} --stdio",
            "--serials",
            "R58M,emulator-5554",
            "x",
        ]);
        assert_eq!(d[1].label(), "emulator-5554");
        assert_eq!(
            d[1].reach,
            Reach::Exec(
                "adb -s emulator-5554 shell feedfs-device mount /data/m-emulator-5554 --stdio"
                    .into()
            )
        );
        let d = listed(&["-s", "A", "-s", "B", "push", "--usb", "x"]);
        assert_eq!(d, vec![usb("A"), usb("B")]);
        assert_eq!(listed(&["push", "--usb", "x"])[0].reach, Reach::Usb(None));
        assert_eq!(listed(&["push", "--stdio", "x"])[0].reach, Reach::Stdio);
        assert_eq!(
            targets(&args(&["push", "--usb", "--all", "x"])).unwrap(),
            Targets::EveryUsb
        );
    }

    #[test]
    fn templates_that_cannot_be_filled_are_refused() {
        let err = |line: &[&str]| targets(&args(line)).unwrap_err().to_string();
        assert!(err(&[
            "push",
            "--exec",
            "a {serial}",
            "--exec",
            "b",
            "--serials",
            "A",
            "x"
        ])
        .contains("2 commands were given"));
        assert!(err(&["push", "--exec", "a", "--serials", "A", "x"]).contains("has no {serial}"));
        assert!(err(&["push", "--exec", "a {serial}", "x"]).contains("no --serials list"));
    }

    #[test]
    fn several_devices_need_a_record_each() {
        let one = usb("R58M");
        let p = Path::new("rec.tsv");
        assert_eq!(record_path(p, &one, false).unwrap(), p);
        assert_eq!(
            record_path(p, &one, true).unwrap_err(),
            TargetError::OneRecordForMany
        );
        let p = Path::new("out/rec-{device}.tsv");
        assert_eq!(
            record_path(p, &one, true).unwrap(),
            Path::new("out/rec-R58M.tsv")
        );
        assert_eq!(
            record_path(p, &usb("../../x"), true).unwrap(),
            Path::new("out/rec-..%2F..%2Fx.tsv")
        );
    }
}
