//! The `feedfs-host` binary: parse the command line, set up logging, run,
//! and turn the outcome into an exit status.

use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use env_logger::Env;

use feedfs_host::cli::{Cli, Command, LogCommand};
use feedfs_protocol::io::print_stdout;

fn main() -> ExitCode {
    let cli = Cli::parse_checked(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let mut logs =
        env_logger::Builder::from_env(Env::default().default_filter_or(cli.log_filter()));
    // ureq shows request paths and queries at trace level: they may carry
    // signatures, so its detail stops at debug.
    let trace = cli.log_filter() == "trace"
        || std::env::var("RUST_LOG").is_ok_and(|v| v.to_ascii_lowercase().contains("trace"));
    if trace {
        for module in ["ureq", "ureq_proto", "rustls"] {
            logs.filter_module(module, log::LevelFilter::Debug);
        }
    }
    // Log lines go above the rows drawn for several devices, not over them,
    // and say which device they are about.
    logs.target(env_logger::Target::Pipe(Box::new(
        feedfs_host::term::Stderr,
    )));
    logs.format(|buf, record| {
        use std::io::Write as _;
        writeln!(
            buf,
            "[{} {:<5} {}] {}{}",
            buf.timestamp(),
            record.level(),
            record.target(),
            feedfs_host::term::device_here(),
            record.args()
        )
    });
    logs.init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let signal = e
                .downcast_ref::<feedfs_host::send::session::SessionError>()
                .and_then(|e| e.signal());
            if let Some(sig) = signal {
                eprintln!("feedfs-host: {e:#}");
                return ExitCode::from(feedfs_host::send::stop::exit_status(sig));
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
        Command::UsbCheck { duration } => {
            let report = feedfs_host::link::usbcheck::check(cli.one_serial(), duration)?;
            anyhow::ensure!(report.failures == 0, "{} checks failed", report.failures);
            Ok(())
        }
        Command::Log(LogCommand::Show(args)) => feedfs_host::logs::logcmd::show(&args),
        Command::Log(LogCommand::Plot(args)) => feedfs_host::logs::logcmd::plot(&args),
        Command::Plan(args) => feedfs_host::logs::logcmd::plan(&args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "feedfs-host", &mut script);
            Ok(print_stdout(|out| out.write_all(&script))?)
        }
        Command::Man { out_dir: None } => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            Ok(print_stdout(|out| out.write_all(&page))?)
        }
        Command::Man { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))
        }
    }
}

/// `feedfs-host devices`: one line per device, serial first, or a JSON
/// array; nothing at all when none is attached (a note on stderr when
/// there is not even a USB bus).
fn devices(json: bool) -> anyhow::Result<()> {
    use feedfs_host::link::usb;
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
    print_stdout(|out| out.write_all(text.as_bytes()))?;
    Ok(())
}
