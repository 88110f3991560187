//! The `feedfs-host` binary: parse the command line, set up logging, run,
//! and turn the outcome into an exit status.

use std::process::ExitCode;

use clap::Parser;
use env_logger::Env;

use feedfs_host::cli::{Cli, Command, LogCommand};

fn main() -> ExitCode {
    env_logger::Builder::from_env(Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let signal = e
                .downcast_ref::<feedfs_host::session::SessionError>()
                .and_then(|e| e.signal());
            if let Some(sig) = signal {
                eprintln!("feedfs-host: {e:#}");
                return ExitCode::from(feedfs_host::stop::exit_status(sig));
            }
            eprintln!("feedfs-host: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Push(args) => feedfs_host::push(&args).map(|_| ()),
        Command::Devices { json } => devices(json),
        Command::UsbCheck { serial, seconds } => {
            let report = feedfs_host::usbcheck::check(serial.as_deref(), seconds)?;
            anyhow::ensure!(report.failures == 0, "{} checks failed", report.failures);
            Ok(())
        }
        Command::Log(LogCommand::Show(args)) => feedfs_host::logcmd::show(&args),
        Command::Log(LogCommand::Plot(args)) => feedfs_host::logcmd::plot(&args),
        Command::Plan(args) => feedfs_host::logcmd::plan(&args),
    }
}

/// `feedfs-host devices`: one line per device, serial first, or a JSON
/// array; nothing at all when none is attached (a note on stderr when
/// there is not even a USB bus).
fn devices(json: bool) -> anyhow::Result<()> {
    use feedfs_host::usb;
    let found = match usb::context() {
        Ok(ctx) => usb::find(&ctx)?,
        Err(e) if usb::is_no_bus(&e) => {
            eprintln!("feedfs-host: {e}");
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let text = if json {
        let list: Vec<_> = found.iter().map(usb::Found::json).collect();
        format!("{}\n", serde_json::Value::Array(list))
    } else {
        found.iter().map(|f| f.line() + "\n").collect()
    };
    feedfs_protocol::io::print_stdout(|out| out.write_all(text.as_bytes()))?;
    Ok(())
}
