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

/// Flag values found by machines: whatever a user types, a flag is taken
/// or refused with its own message (exit code 2), never a panic.
mod arbitrary_values {
    use super::*;
    use proptest::prelude::*;

    /// `--flag=value` refused as an invalid value whose message has `want`.
    fn refused_with(flag: &str, value: &str, want: &[&str]) -> Result<(), TestCaseError> {
        match parse(&[&format!("{flag}={value}")]) {
            Ok(_) => Ok(()),
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::ValueValidation, "{}", err);
                prop_assert_eq!(err.exit_code(), 2);
                let text = err.to_string();
                prop_assert!(
                    want.iter().any(|w| text.contains(w)),
                    "{flag}={value:?}: {text}"
                );
                Ok(())
            }
        }
    }

    /// CIDR-like text: digits, dots, colons and slashes, and anything.
    fn cidr_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9a-f.:/]{0,24}",
            (any::<std::net::IpAddr>(), 0u16..200).prop_map(|(ip, len)| format!("{ip}/{len}")),
            "\\PC{0,24}",
        ]
    }

    fn port_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9 -]{0,14}",
            (any::<u32>(), any::<u32>()).prop_map(|(a, b)| format!("{a}-{b}")),
            "\\PC{0,16}",
        ]
    }

    fn duration_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{0,22}(ns|us|ms|s|m|h|d|w|y|)",
            "([0-9]{1,4}(ms|s|m|h) ?){1,4}",
            "\\PC{0,16}",
        ]
    }

    /// Listen addresses that need no name lookup: `:PORT`, an address and
    /// port, and text without a colon (refused before any lookup).
    fn listen_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ":\\PC{0,8}",
            any::<SocketAddr>().prop_map(|a| a.to_string()),
            "[^:]{0,24}",
        ]
    }

    proptest! {
        #[test]
        fn cidr_filters_parse_or_say_invalid_cidr(text in cidr_text()) {
            for flag in ["--filter.cidr.include", "--filter.cidr.exclude"] {
                refused_with(flag, &text, &["invalid CIDR"])?;
            }
        }

        #[test]
        fn an_address_with_a_valid_prefix_is_taken_as_its_network(
            ip in any::<std::net::IpAddr>(), len in 0u8..=128,
        ) {
            let len = if ip.is_ipv4() { len % 33 } else { len };
            let cli = parse(&[&format!("--filter.cidr.include={ip}/{len}")]).unwrap();
            let want = ipnet::IpNet::new(ip, len).unwrap().trunc();
            prop_assert_eq!(cli.cidr_include, vec![want]);
        }

        #[test]
        fn port_filters_parse_or_name_the_bad_port(text in port_text()) {
            for flag in ["--filter.port.include", "--filter.port.exclude"] {
                refused_with(flag, &text, &["invalid port"])?;
            }
            if let Ok(cli) = parse(&[&format!("--filter.port.include={text}")]) {
                prop_assert!(cli.port_include.iter().all(|r| 1 <= r.first && r.first <= r.last));
            }
        }

        #[test]
        fn durations_parse_or_say_why(text in duration_text()) {
            refused_with("--flows.idle-timeout", &text, &["invalid duration", "minimum of 1s"])?;
            if let Ok(cli) = parse(&[&format!("--flows.idle-timeout={text}")]) {
                prop_assert!(cli.idle_timeout >= Duration::from_secs(1));
            }
            for flag in ["--web.read-header-timeout", "--web.write-timeout"] {
                refused_with(flag, &text, &["invalid duration", "minimum of 100ms"])?;
            }
        }

        #[test]
        fn listen_addresses_parse_or_say_what_is_expected(text in listen_text()) {
            refused_with(
                "--web.listen-address",
                &text,
                &["invalid port", "expected HOST:PORT", "resolves to no address"],
            )?;
        }

        #[test]
        fn label_choices_parse_or_say_why(text in "[a-z_, ]{0,40}|\\PC{0,30}") {
            refused_with(
                "--flows.labels",
                &text,
                &["empty label name", "unknown label", "is listed twice"],
            )?;
        }
    }
}
