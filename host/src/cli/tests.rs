//! The command line as a user types it: what parses, what is refused.

use super::*;
use clap::CommandFactory;

#[test]
fn definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn exactly_one_link() {
    let parse = |args: &[&str]| Cli::parse_checked(args);
    assert!(parse(&["feedfs-host", "push", "a"]).is_err());
    assert!(parse(&["feedfs-host", "push", "--stdio", "--exec", "x", "a"]).is_err());
    assert!(parse(&["feedfs-host", "push", "--stdio"]).is_err());
    let Command::Push(p) = parse(&["feedfs-host", "push", "--exec", "x", "a", "b"])
        .unwrap()
        .command
    else {
        panic!("not a push")
    };
    assert_eq!(p.exec, ["x"]);
    assert_eq!(p.run_size, 256 << 10);
    assert_eq!(p.readahead, 8 << 20);
    assert_eq!(p.paths.len(), 2);
    let Command::Push(p) = parse(&["feedfs-host", "push", "--stdio", "--run-size", "1M", "a"])
        .unwrap()
        .command
    else {
        panic!("not a push")
    };
    assert!(p.stdio);
    assert_eq!(p.run_size, 1 << 20);
    assert!(parse(&["feedfs-host", "push", "--stdio", "--run-size", "3K", "a"]).is_err());
    assert!(parse(&["feedfs-host", "push", "--stdio", "--run-size", "2M", "a"]).is_err());
    let old = parse(&["feedfs-host", "push", "--stdio", "--readahead", "32", "a"])
        .unwrap_err()
        .to_string();
    assert!(old.contains("4K"), "a count of blocks is refused: {old}");
    let gone = parse(&["feedfs-host", "push", "--stdio", "--block-size", "64K", "a"])
        .unwrap_err()
        .to_string();
    assert!(
        gone.contains("--block-size is gone: pages are 4 KiB; --run-size sets"),
        "{gone}"
    );
    // USB: --serial and --wait only with --usb.
    let Command::Push(p) = parse(&["feedfs-host", "push", "--usb", "--wait", "a"])
        .unwrap()
        .command
    else {
        panic!("not a push")
    };
    assert!(p.usb && p.wait && p.serial.is_empty());
    assert!(parse(&["feedfs-host", "push", "--usb", "--stdio", "a"]).is_err());
    assert!(parse(&["feedfs-host", "push", "--stdio", "--wait", "a"]).is_err());
    assert!(parse(&["feedfs-host", "push", "--exec", "x", "--serial", "s", "a"]).is_err());
    assert!(parse(&["feedfs-host", "-s", "s", "push", "--stdio", "a"]).is_err());
}

#[test]
fn serial_is_global() {
    let parse = |args: &[&str]| Cli::parse_checked(args);
    for args in [
        &["feedfs-host", "push", "--usb", "--serial", "abc", "a"][..],
        &["feedfs-host", "-s", "abc", "push", "--usb", "a"],
        &["feedfs-host", "push", "-s", "abc", "--usb", "a"],
    ] {
        let Command::Push(p) = parse(args).unwrap().command else {
            panic!("not a push")
        };
        assert_eq!(p.serial, ["abc"], "{args:?}");
    }
    let cli = parse(&["feedfs-host", "usb-check", "--serial", "abc"]).unwrap();
    assert_eq!(cli.one_serial(), Some("abc"));
    let Command::UsbCheck { duration } = cli.command else {
        panic!("not usb-check")
    };
    assert_eq!(duration, Duration::from_secs(3));
    assert!(parse(&["feedfs-host", "usb-check", "--duration", "3"]).is_err());
    assert!(parse(&["feedfs-host", "usb-check", "--duration", "11m"]).is_err());
}

#[test]
fn verbose_and_quiet_move_the_log_level() {
    let filter = |args: &[&str]| {
        let args = [&["feedfs-host"], args, &["devices"]].concat();
        Cli::parse_checked(args).map(|c| c.log_filter())
    };
    assert_eq!(filter(&[]).unwrap(), "warn");
    assert_eq!(filter(&["-v"]).unwrap(), "info");
    assert_eq!(filter(&["-vv"]).unwrap(), "debug");
    assert_eq!(filter(&["-vvvvv"]).unwrap(), "trace");
    assert_eq!(filter(&["-q"]).unwrap(), "error");
    assert_eq!(filter(&["-qqq"]).unwrap(), "off");
    assert!(filter(&["-v", "-q"]).is_err());
}

#[test]
fn handshake_timeouts_need_a_unit_and_a_sane_range() {
    let timeout = |t: &str| {
        let args = [
            "feedfs-host",
            "push",
            "--stdio",
            "--handshake-timeout",
            t,
            "a",
        ];
        Cli::parse_checked(args).map(|c| match c.command {
            Command::Push(p) => p.handshake_timeout,
            _ => panic!("not a push"),
        })
    };
    assert_eq!(timeout("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(timeout("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(timeout("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(timeout("1h").unwrap(), Duration::from_secs(3600));
    let err = |t: &str| timeout(t).unwrap_err().to_string();
    assert!(err("10").contains("no unit"), "{}", err("10"));
    assert!(err("1ms").contains("from 100ms to 1h"), "{}", err("1ms"));
    assert!(err("2h").contains("from 100ms to 1h"), "{}", err("2h"));
    assert!(err("x").contains("not a duration"), "{}", err("x"));
    let Command::Push(p) = Cli::parse_checked(["feedfs-host", "push", "--stdio", "a"])
        .unwrap()
        .command
    else {
        panic!("not a push")
    };
    assert_eq!(p.handshake_timeout, Duration::from_secs(30));
}

#[test]
fn compress_is_auto_unless_told() {
    let compress = |extra: &[&str]| {
        let args = [&["feedfs-host", "push", "--stdio"], extra, &["a"]].concat();
        Cli::parse_checked(args).map(|c| match c.command {
            Command::Push(p) => p.compress,
            _ => panic!("not a push"),
        })
    };
    assert_eq!(compress(&[]).unwrap(), Mode::Auto);
    assert_eq!(compress(&["--compress", "lz4"]).unwrap(), Mode::Lz4);
    assert_eq!(compress(&["--compress", "none"]).unwrap(), Mode::None);
    assert_eq!(compress(&["--compress=auto"]).unwrap(), Mode::Auto);
    assert!(compress(&["--compress", "zstd"]).is_err());
}

#[test]
fn log_and_plan_commands() {
    let parse = |args: &[&str]| Cli::parse_checked(args);
    assert!(
        parse(&["feedfs-host", "plan", "a.log"]).is_err(),
        "-o is needed"
    );
    assert!(parse(&["feedfs-host", "plan"]).is_err());
    assert!(parse(&["feedfs-host", "plan", "--show", "p", "-o", "q"]).is_err());
    let Command::Plan(p) = parse(&["feedfs-host", "plan", "a", "b", "-o", "p"])
        .unwrap()
        .command
    else {
        panic!("not plan")
    };
    assert_eq!((p.logs.len(), p.window), (2, 32));
    assert!(parse(&["feedfs-host", "plan", "--show", "p"]).is_ok());
    assert!(
        parse(&["feedfs-host", "log", "plot", "x"]).is_err(),
        "-o is needed"
    );
    assert!(parse(&["feedfs-host", "log", "plot", "x", "-o", "y.svg"]).is_ok());
    assert!(parse(&["feedfs-host", "log", "show", "x", "--json"]).is_ok());
    let Command::Push(p) = parse(&["feedfs-host", "push", "--stdio", "--plan", "p", "a"])
        .unwrap()
        .command
    else {
        panic!("not push")
    };
    assert_eq!(p.plan, Some(PathBuf::from("p")));
}

#[test]
fn headers_repeat_and_sources_take_a_ca_and_a_retry_time() {
    let parse = |args: &[&str]| Cli::parse_checked(args);
    let Command::Push(p) = parse(&[
        "feedfs-host",
        "push",
        "--stdio",
        "-H",
        "A: 1",
        "--header",
        "B: 2",
        "--cacert",
        "ca.pem",
        "--retry-for",
        "5m",
        "https://h/a.img",
    ])
    .unwrap()
    .command
    else {
        panic!("not a push")
    };
    assert_eq!(p.headers, ["A: 1", "B: 2"]);
    assert_eq!(p.cacert, Some(PathBuf::from("ca.pem")));
    assert_eq!(p.retry_for, Duration::from_secs(300));
    assert_eq!(p.paths, [PathBuf::from("https://h/a.img")]);
    let Command::Push(p) = parse(&["feedfs-host", "push", "--stdio", "a"])
        .unwrap()
        .command
    else {
        panic!("not a push")
    };
    assert_eq!(p.retry_for, Duration::from_secs(60), "the default");
    assert!(parse(&[
        "feedfs-host",
        "push",
        "--stdio",
        "--retry-for",
        "500ms",
        "a"
    ])
    .is_err());
    assert!(parse(&["feedfs-host", "push", "--stdio", "--retry-for", "25h", "a"]).is_err());
}

#[test]
fn several_devices() {
    let parse = |args: &[&str]| Cli::parse_checked(args);
    let push = |args: &[&str]| match parse(args).unwrap().command {
        Command::Push(p) => p,
        _ => panic!("not a push"),
    };
    let p = push(&["feedfs-host", "push", "--exec", "a", "--exec", "b", "x"]);
    assert_eq!(p.exec, ["a", "b"]);
    let p = push(&[
        "feedfs-host",
        "push",
        "--exec",
        "adb -s {serial} shell",
        "--serials",
        "A,B",
        "x",
    ]);
    assert_eq!(p.serials, ["A", "B"]);
    assert_eq!(p.cache, 256 << 20);
    let p = push(&[
        "feedfs-host",
        "-s",
        "A",
        "-s",
        "B",
        "push",
        "--usb",
        "--wait",
        "x",
    ]);
    assert_eq!(p.serial, ["A", "B"]);
    let p = push(&[
        "feedfs-host",
        "push",
        "--usb",
        "--all",
        "--cache",
        "0",
        "--json",
        "x",
    ]);
    assert!(p.all && p.serial.is_empty() && p.cache == 0 && p.json);
    let err = |args: &[&str]| parse(args).unwrap_err().to_string();
    assert!(
        err(&["feedfs-host", "-s", "A", "-s", "A", "push", "--usb", "x"])
            .contains("the serial A is given twice")
    );
    assert!(err(&[
        "feedfs-host",
        "push",
        "--exec",
        "{serial}",
        "--serials",
        "A,A",
        "x"
    ])
    .contains("given twice"));
    assert!(
        err(&["feedfs-host", "-s", "A", "push", "--usb", "--all", "x"])
            .contains("--all serves every")
    );
    assert!(err(&["feedfs-host", "push", "--exec", "a", "--all", "x"]).contains("--usb"));
    assert!(err(&["feedfs-host", "push", "--stdio", "--serials", "A", "x"]).contains("--exec"));
    assert!(err(&["feedfs-host", "push", "--stdio", "--json", "x"]).contains("--json"));
    assert!(err(&["feedfs-host", "-s", "A", "-s", "B", "usb-check"]).contains("one device"));
    assert!(err(&[
        "feedfs-host",
        "push",
        "--exec",
        "{serial}",
        "--serials",
        "A,,B",
        "x"
    ])
    .contains("a serial is empty"));
}
