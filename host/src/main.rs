//! The `feedfs-host` binary: parse the command line, set up logging, run,
//! and turn the outcome into an exit status.

use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use env_logger::Env;

use feedfs_host::cli::{Cli, Command, LogCommand};

fn main() -> ExitCode {
    let cli = Cli::parse_checked(std::env::args_os()).unwrap_or_else(|e| e.exit());
    env_logger::Builder::from_env(Env::default().default_filter_or(cli.log_filter())).init();
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
            for f in found {
                println!("{}", f.describe());
            }
            Ok(())
        }
        Command::UsbCheck { duration } => {
            let report = feedfs_host::usbcheck::check(cli.serial.as_deref(), duration)?;
            anyhow::ensure!(report.failures == 0, "{} checks failed", report.failures);
            Ok(())
        }
        Command::Log(LogCommand::Show(args)) => feedfs_host::logcmd::show(&args),
        Command::Log(LogCommand::Plot(args)) => feedfs_host::logcmd::plot(&args),
        Command::Plan(args) => feedfs_host::logcmd::plan(&args),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "feedfs-host", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { out_dir: None } => {
            Ok(clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?)
        }
        Command::Man { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))
        }
    }
}
