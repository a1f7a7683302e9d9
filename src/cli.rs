//! Command-line flags, named the way Prometheus exporters name them.

use std::net::{SocketAddr, ToSocketAddrs};

use clap::{Parser, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "tcp-flow-exporter",
    version,
    about = "Prometheus exporter of exact per-flow TCP byte counters, counted in the kernel with eBPF.",
    long_about = "Prometheus exporter of exact per-flow TCP byte counters, counted in the kernel \
                  with eBPF.\n\nEvery TCP flow on this node (local IP and port, peer IP and port) \
                  gets two counters: the payload bytes applications really sent on it and really \
                  received from it. Needs root, or CAP_BPF and CAP_PERFMON, and kernel BTF."
)]
pub struct Cli {
    /// Address to serve HTTP on: HOST:PORT, [IPV6]:PORT, or :PORT for every interface.
    // The Prometheus port-allocation range 9100–9999 is fully taken, so the
    // default sits outside it, on a port no well-known exporter uses.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = ":10420",
        value_parser = parse_listen_address
    )]
    pub listen_address: ListenAddress,

    /// Path under which to expose the metrics.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics",
        value_parser = parse_telemetry_path
    )]
    pub telemetry_path: String,

    /// Kernel hook backend. `auto` takes the cheapest one that loads and attaches here,
    /// trying tracepoint, then fentry, then kprobe.
    #[arg(long = "probe", value_enum, default_value_t = ProbeChoice::Auto)]
    pub probe: ProbeChoice,

    /// Capacity of the kernel flow map: how many distinct flows are counted one by one.
    /// Bytes of flows beyond it are added to tcp_flow_exporter_overflow_bytes_total.
    #[arg(
        long = "flows.max",
        value_name = "N",
        default_value_t = 65536,
        value_parser = clap::value_parser!(u32).range(1..=16_777_216)
    )]
    pub flows_max: u32,

    /// Turn on the kernel's BPF run-time statistics while the exporter runs
    /// (BPF_ENABLE_STATS), for the tcp_flow_exporter_program_run* metrics. Costs
    /// two clock reads per run of every BPF program on the node. Already on when
    /// sysctl kernel.bpf_stats_enabled=1.
    #[arg(long = "bpf.stats")]
    pub bpf_stats: bool,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProbeChoice {
    /// Try tracepoint, fentry and kprobe in that order; use the first that attaches.
    Auto,
    /// tp_btf on sock:sock_send_length / sock:sock_recv_length (Linux 6.5+).
    Tracepoint,
    /// fexit on tcp_sendmsg / tcp_recvmsg (and tcp_sendpage before Linux 6.5).
    Fentry,
    /// kprobe + kretprobe on the same functions as fentry.
    Kprobe,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

/// A listen address as given, with the socket addresses to try in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddress {
    pub text: String,
    pub candidates: Vec<SocketAddr>,
}

fn parse_listen_address(text: &str) -> Result<ListenAddress, String> {
    let candidates = match text.strip_prefix(':') {
        // ":PORT" means every interface, as in Go exporters. The IPv6 wildcard
        // also accepts IPv4 on Linux; hosts with IPv6 disabled fall back to IPv4.
        Some(port) => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("invalid port {port:?}: expected a number 0-65535"))?;
            vec![
                SocketAddr::from(([0u16; 8], port)),
                SocketAddr::from(([0u8; 4], port)),
            ]
        }
        None => text
            .to_socket_addrs()
            .map_err(|e| format!("expected HOST:PORT, [IPV6]:PORT or :PORT ({e})"))?
            .collect(),
    };
    if candidates.is_empty() {
        return Err(format!("{text:?} resolves to no address"));
    }
    Ok(ListenAddress {
        text: text.to_owned(),
        candidates,
    })
}

fn parse_telemetry_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if text == "/" {
        return Err("'/' is the landing page; choose another path".into());
    }
    if text.contains(['?', '#']) || text.chars().any(char::is_whitespace) {
        return Err("must be a plain path without query, fragment or spaces".into());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
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
        ])
        .unwrap();
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
}
