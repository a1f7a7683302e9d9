//! Command-line flags, named the way Prometheus exporters name them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ipnet::IpNet;

use crate::flows::selection::LabelSelection;
use crate::kernel::filter::{parse_cidr, FlowFilter, Loopback, PortRange, PortsMode};
use crate::kernel::skel::Capacity;
use crate::kernel::Backend;

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

    /// A web configuration file (exporter-toolkit format) for TLS and basic auth.
    /// Without it, plain HTTP without authentication.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// How long a connection may take to complete its TLS handshake and each
    /// request's headers, the first request's and each next one's on a
    /// kept-alive connection; then it is closed.
    #[arg(
        long = "web.read-header-timeout",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_web_timeout
    )]
    pub read_header_timeout: Duration,

    /// How long a response may wait for the client to read any of it; then
    /// the connection is closed and the response's memory freed.
    #[arg(
        long = "web.write-timeout",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_web_timeout
    )]
    pub write_timeout: Duration,

    /// The most bytes a request's line and headers may take together; more
    /// is answered with 431 and the connection closed.
    #[arg(
        long = "web.max-header-bytes",
        value_name = "BYTES",
        default_value_t = 16_384,
        value_parser = clap::value_parser!(u32).range(1024..=262_144)
    )]
    pub max_header_bytes: u32,

    /// The most connections open at once. At the cap, the connection that has
    /// waited longest for a request is closed to make room for a new one.
    #[arg(
        long = "web.max-connections",
        value_name = "N",
        default_value_t = 512,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub max_connections: u32,

    /// Kernel hook backend. `auto` takes the cheapest one that loads and attaches here,
    /// trying socket, tracepoint, fentry, then kprobe.
    #[arg(long = "probe", value_enum, default_value_t = ProbeChoice::Auto)]
    pub probe: ProbeChoice,

    /// How many flows are counted one by one: the limit of exported flow series, and
    /// the capacity of each kernel flow table. Bytes of flows beyond it go to the
    /// overflow flow (src_ip="overflow") and tcp_flow_exporter_overflow_bytes_total.
    #[arg(
        long = "flows.max",
        value_name = "N",
        default_value_t = Capacity::FLOWS_MAX_DEFAULT.0,
        value_parser = clap::value_parser!(u32).range(1..=16_777_216)
    )]
    pub flows_max: u32,

    /// The labels the flow counters (bytes and cost) carry, comma-separated, from:
    /// src_ip, src_port, dst_ip, dst_port, role, src_namespace, src_pod, src_workload,
    /// dst_kind, dst_namespace, dst_name, dst_workload, path. Flows that agree on them
    /// add into one series. Default: all of them.
    #[arg(long = "flows.labels", value_name = "LABELS", value_parser = LabelSelection::parse)]
    pub flow_labels: Option<LabelSelection>,

    /// Which ports a flow keeps. `server`: only the server's port, so all connections of
    /// one client to one server port are one flow. `all`: both, one flow per connection.
    #[arg(long = "flows.ports", value_enum, default_value_t = PortsMode::Server)]
    pub ports: PortsMode,

    /// Drop a flow, and end its series, after this long without traffic (e.g. 30s, 5m, 1h).
    #[arg(
        long = "flows.idle-timeout",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = parse_idle_timeout
    )]
    pub idle_timeout: Duration,

    /// How many open connections the kernel keeps track of. Beyond it, the socket
    /// backend does not count a new connection, and the per-event backends count it
    /// with role "unknown" and both ports.
    #[arg(
        long = "sockets.max",
        value_name = "N",
        default_value_t = Capacity::SOCKETS_MAX_DEFAULT.0,
        value_parser = clap::value_parser!(u32).range(1..=16_777_216)
    )]
    pub sockets_max: u32,

    /// Count only flows whose peer address is in CIDR (repeatable, or comma-separated).
    #[arg(long = "filter.cidr.include", value_name = "CIDR", value_delimiter = ',',
          value_parser = parse_cidr)]
    pub cidr_include: Vec<IpNet>,

    /// Do not count flows whose peer address is in CIDR (repeatable, or comma-separated).
    #[arg(long = "filter.cidr.exclude", value_name = "CIDR", value_delimiter = ',',
          value_parser = parse_cidr)]
    pub cidr_exclude: Vec<IpNet>,

    /// Count only connections whose server port is PORT or in FIRST-LAST (repeatable, or
    /// comma-separated).
    #[arg(
        long = "filter.port.include",
        value_name = "PORTS",
        value_delimiter = ','
    )]
    pub port_include: Vec<PortRange>,

    /// Do not count connections whose server port is PORT or in FIRST-LAST (repeatable,
    /// or comma-separated).
    #[arg(
        long = "filter.port.exclude",
        value_name = "PORTS",
        value_delimiter = ','
    )]
    pub port_exclude: Vec<PortRange>,

    /// Whether to count flows with a loopback peer (127.0.0.0/8, ::1, or the local
    /// address itself). Counted by default: it is real traffic on the node.
    #[arg(long = "filter.loopback", value_enum, default_value_t = Loopback::Include)]
    pub loopback: Loopback,

    /// Turn on the kernel's BPF run-time statistics while the exporter runs
    /// (BPF_ENABLE_STATS), for the tcp_flow_exporter_program_run* metrics. Costs
    /// two clock reads per run of every BPF program on the node. Already on when
    /// sysctl kernel.bpf_stats_enabled=1.
    #[arg(long = "bpf.stats")]
    pub bpf_stats: bool,

    /// Kubernetes: the kubeconfig to watch pods, Services and Nodes with. In a pod,
    /// the in-cluster configuration is used without it.
    #[arg(long = "kubernetes.kubeconfig", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// This node's name, to find its Node object (zone, region) and its pods
    /// [default: $NODE_NAME, then the hostname].
    #[arg(long = "node.name", value_name = "NAME", env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// This node's zone, over its Node's topology.kubernetes.io/zone label; for hosts
    /// outside Kubernetes.
    #[arg(long = "node.zone", value_name = "ZONE", value_parser = parse_label_value)]
    pub node_zone: Option<String>,

    /// This node's region, over its Node's topology.kubernetes.io/region label.
    #[arg(long = "node.region", value_name = "REGION", value_parser = parse_label_value)]
    pub node_region: Option<String>,

    /// Named networks (YAML: networks: [{cidr, name, zone, region}]) that label peers
    /// Kubernetes does not know. Reloaded on SIGHUP and when the file changes.
    #[arg(long = "labels.file", value_name = "PATH")]
    pub labels_file: Option<PathBuf>,

    /// Prices per GB or GiB by path and named network (YAML: currency, unit, prices,
    /// networks), for tcp_flow_cost_total. Reloaded on SIGHUP and when the file changes.
    #[arg(long = "cost.file", value_name = "PATH")]
    pub cost_file: Option<PathBuf>,

    /// The network namespace whose conntrack table says which backend a Service
    /// connection went to (e.g. /proc/1/ns/net, with hostPID). Without it the
    /// exporter's own namespace is read, if it can be: the node's when the
    /// exporter runs on the host or with hostNetwork. Needs --flows.ports=all, which
    /// keeps the client port that names one connection.
    #[arg(long = "conntrack.netns", value_name = "PATH")]
    pub conntrack_netns: Option<PathBuf>,

    /// Attribute each connection to the cgroup its socket was created in (a pod, a
    /// systemd unit, a container): the src_pod and src_workload labels. The cgroup id is
    /// then part of the kernel's flow key.
    #[arg(long = "cgroup.attribution", value_name = "BOOL", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub cgroup_attribution: bool,

    /// Where the host's cgroup v2 hierarchy is mounted, to name the cgroups. In a
    /// container, mount the host's /sys/fs/cgroup and point this at it
    /// [default: the first cgroup2 mount, else /sys/fs/cgroup].
    #[arg(long = "cgroup.root", value_name = "PATH")]
    pub cgroup_root: Option<PathBuf>,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
}

impl Cli {
    /// The --flows.ports and --filter.* settings the kernel applies.
    pub fn flow_filter(&self) -> FlowFilter {
        FlowFilter {
            ports: self.ports,
            loopback: self.loopback,
            cidr_include: self.cidr_include.clone(),
            cidr_exclude: self.cidr_exclude.clone(),
            port_include: self.port_include.clone(),
            port_exclude: self.port_exclude.clone(),
            cgroups: self.cgroup_attribution,
        }
    }
}

impl ProbeChoice {
    /// The backend asked for, or `None` to try them all.
    pub fn backend(self) -> Option<Backend> {
        match self {
            ProbeChoice::Auto => None,
            ProbeChoice::Socket => Some(Backend::Socket),
            ProbeChoice::Tracepoint => Some(Backend::Tracepoint),
            ProbeChoice::Fentry => Some(Backend::Fentry),
            ProbeChoice::Kprobe => Some(Backend::Kprobe),
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProbeChoice {
    /// Try socket, tracepoint, fentry and kprobe in that order; use the first that works.
    Auto,
    /// Nothing counted per send or receive: each connection's bytes are read
    /// from TCP's own sequence numbers at close and at every scrape (Linux 5.13+).
    Socket,
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

fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?} ({e}); e.g. 30s, 5m, 1h"))?;
    // Idle flows are looked for once a second, when the kernel tables drain.
    if timeout < Duration::from_secs(1) {
        return Err(format!("{text:?} is shorter than the minimum of 1s"));
    }
    Ok(timeout)
}

fn parse_web_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?} ({e}); e.g. 10s, 1m"))?;
    if timeout < Duration::from_millis(100) {
        return Err(format!("{text:?} is shorter than the minimum of 100ms"));
    }
    Ok(timeout)
}

/// Zone and region names become label values and are compared as given:
/// refuse what is surely a mistake.
fn parse_label_value(text: &str) -> Result<String, String> {
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{text:?} must be a non-empty name without spaces"));
    }
    Ok(text.to_owned())
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
mod tests;
