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
            eprintln!("feedfs-host: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Push(args) => feedfs_host::push(&args).map(|_| ()),
        Command::Devices => {
            let ctx = feedfs_host::usb::context()?;
            let found = feedfs_host::usb::find(&ctx)?;
            if found.is_empty() {
                eprintln!("no feedfs device attached");
            }
            let text: String = found.iter().map(|f| f.describe() + "\n").collect();
            feedfs_protocol::io::print_stdout(|out| out.write_all(text.as_bytes()))?;
            Ok(())
        }
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
