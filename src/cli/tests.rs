//! Flags: defaults, every flag, and what is refused.

use super::*;
use clap::error::ErrorKind;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("tcp-flow-exporter").chain(args.iter().copied()))
}

#[test]
fn defaults_follow_exporter_conventions() {
    let cli = parse(&[]).unwrap();
    assert_eq!(cli.listen_address.text, ":10420");
    assert_eq!(
        cli.listen_address.candidates,
        vec![
            "[::]:10420".parse::<SocketAddr>().unwrap(),
            "0.0.0.0:10420".parse().unwrap()
        ]
    );
    assert_eq!(cli.telemetry_path, "/metrics");
    assert_eq!(cli.probe, ProbeChoice::Auto);
    assert_eq!(cli.flows_max, 65536);
    assert_eq!(cli.log_level, LogLevel::Info);
    assert!(!cli.bpf_stats);
    assert_eq!(cli.ports, PortsMode::Server);
    assert_eq!(cli.idle_timeout, Duration::from_secs(300));
    assert_eq!(cli.sockets_max, 262_144);
    // The cgroup id is in the key by default, for the src_* labels.
    let expected = FlowFilter {
        cgroups: true,
        ..FlowFilter::default()
    };
    assert_eq!(cli.flow_filter(), expected);
    assert!(cli.cgroup_attribution);
    assert_eq!(cli.cgroup_root, None);
    assert_eq!((cli.kubeconfig, cli.labels_file), (None, None));
    // Plain HTTP, with limits on by default.
    assert_eq!(cli.web_config_file, None);
    assert_eq!(cli.read_header_timeout, Duration::from_secs(10));
    assert_eq!(cli.write_timeout, Duration::from_secs(30));
    assert_eq!(cli.max_header_bytes, 16_384);
    assert_eq!(cli.max_connections, 512);
}

#[test]
fn every_flag_parses() {
    let cli = parse(&[
        "--web.listen-address=127.0.0.1:9999",
        "--web.telemetry-path=/flows",
        "--probe=kprobe",
        "--flows.max=100000",
        "--log.level=debug",
        "--bpf.stats",
        "--flows.ports=all",
        "--flows.idle-timeout=90s",
        "--sockets.max=1000",
        "--filter.cidr.include=10.0.0.0/8,fd00::/8",
        "--filter.cidr.include=192.0.2.1",
        "--filter.cidr.exclude=10.9.0.0/16",
        "--filter.port.include=443,8000-8100",
        "--filter.port.exclude=22",
        "--filter.loopback=exclude",
        "--web.config.file=/etc/web.yml",
        "--web.read-header-timeout=2s",
        "--web.write-timeout=1m",
        "--web.max-header-bytes=8192",
        "--web.max-connections=64",
    ])
    .unwrap();
    assert_eq!(cli.web_config_file, Some("/etc/web.yml".into()));
    assert_eq!(cli.read_header_timeout, Duration::from_secs(2));
    assert_eq!(cli.write_timeout, Duration::from_secs(60));
    assert_eq!((cli.max_header_bytes, cli.max_connections), (8192, 64));
    let filter = cli.flow_filter();
    assert_eq!(filter.ports, PortsMode::All);
    assert_eq!(filter.loopback, Loopback::Exclude);
    assert_eq!(
        filter
            .cidr_include
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
        ["10.0.0.0/8", "fd00::/8", "192.0.2.1/32"]
    );
    assert_eq!(filter.cidr_exclude.len(), 1);
    assert_eq!(
        filter
            .port_include
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        ["443", "8000-8100"]
    );
    assert_eq!(filter.port_exclude[0].to_string(), "22");
    assert_eq!(cli.idle_timeout, Duration::from_secs(90));
    assert_eq!(cli.sockets_max, 1000);
    assert_eq!(
        cli.listen_address.candidates,
        vec!["127.0.0.1:9999".parse().unwrap()]
    );
    assert_eq!(cli.telemetry_path, "/flows");
    assert_eq!(cli.probe, ProbeChoice::Kprobe);
    assert_eq!(cli.flows_max, 100_000);
    assert_eq!(cli.log_level, LogLevel::Debug);
    assert!(cli.bpf_stats);
}

#[test]
fn ipv6_listen_address() {
    let cli = parse(&["--web.listen-address", "[::1]:10420"]).unwrap();
    assert_eq!(
        cli.listen_address.candidates,
        vec!["[::1]:10420".parse().unwrap()]
    );
}

#[test]
fn bad_values_are_usage_errors() {
    for args in [
        &["--probe=ebpf"][..],
        &["--flows.max=0"],
        &["--flows.max=-5"],
        &["--flows.max=99999999999"],
        &["--web.listen-address=:99999"],
        &["--web.listen-address=no-port"],
        &["--web.telemetry-path=metrics"],
        &["--web.telemetry-path=/"],
        &["--log.level=loud"],
        &["--no-such-flag"],
        &["--flows.ports=some"],
        &["--flows.idle-timeout=500ms"],
        &["--flows.idle-timeout=soon"],
        &["--sockets.max=0"],
        &["--filter.cidr.include=10.0.0.0/40"],
        &["--filter.cidr.exclude=nope"],
        &["--filter.port.include=0"],
        &["--filter.port.exclude=9-1"],
        &["--filter.loopback=maybe"],
        &["--web.read-header-timeout=0s"],
        &["--web.write-timeout=never"],
        &["--web.max-header-bytes=100"],
        &["--web.max-connections=0"],
    ] {
        let err = parse(args).expect_err(&format!("{args:?} must be rejected"));
        assert_ne!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
        assert_eq!(err.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn help_explains_every_flag() {
    let help = Cli::command_for_help();
    for flag in [
        "--web.listen-address",
        "--web.telemetry-path",
        "--probe",
        "--flows.max",
        "--log.level",
        "--bpf.stats",
        "--flows.ports",
        "--flows.idle-timeout",
        "--sockets.max",
        "--filter.cidr.include",
        "--filter.cidr.exclude",
        "--filter.port.include",
        "--filter.port.exclude",
        "--filter.loopback",
        "--web.config.file",
        "--web.read-header-timeout",
        "--web.write-timeout",
        "--web.max-header-bytes",
        "--web.max-connections",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(help.contains("[default: :10420]"), "{help}");
}

impl Cli {
    fn command_for_help() -> String {
        use clap::CommandFactory;
        Cli::command().render_long_help().to_string()
    }
}
