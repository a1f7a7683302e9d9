//! Entry point: parse flags, check privileges, attach the probe, serve HTTP
//! until SIGINT or SIGTERM, then detach everything.

use std::io::{self, IsTerminal};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use tracing::info;

use tcp_flow_exporter::cli::{Cli, ListenAddress};
use tcp_flow_exporter::cost;
use tcp_flow_exporter::exposition::chunked::WarmBuffers;
use tcp_flow_exporter::exposition::ExporterInfo;
use tcp_flow_exporter::flows::{maintenance, FlowReader, FlowTable};
use tcp_flow_exporter::identity::start::{self, IdentityConfig};
use tcp_flow_exporter::kernel::least_privilege::{self, bit, CAP_NET_ADMIN};
use tcp_flow_exporter::kernel::{features, privileges, programs, Probe, ProbeConfig};
use tcp_flow_exporter::source;
use tcp_flow_exporter::web::tls::Tls;
use tcp_flow_exporter::web::{self, AppState, BasicAuth, Limits};
use tokio::sync::Semaphore;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_logging(&cli);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp-flow-exporter: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// --help and --version print as clap renders them; a usage error becomes one
/// line and exit status 2, like every other error this program reports.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let message = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("tcp-flow-exporter: usage error: {message} (see --help)");
    ExitCode::from(2)
}

fn init_logging(cli: &Cli) {
    // kube-runtime warns at every retry of a failing watch; the exporter
    // logs each watch's state changes once itself (identity/kubernetes), so
    // kube's own warnings are kept for --log.level=debug.
    let level = cli.log_level.as_filter();
    let mut filter = tracing_subscriber::EnvFilter::default().add_directive(level.into());
    if level < tracing::level_filters::LevelFilter::DEBUG {
        filter = filter.add_directive("kube_runtime::watcher=error".parse().expect("a directive"));
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .with_ansi(io::stderr().is_terminal())
        .init();
    // libbpf explains load failures at length; keep that for --log.level=debug
    // so a fallback under --probe=auto does not flood the log.
    libbpf_rs::set_print(Some((
        libbpf_rs::PrintLevel::Debug,
        |_level, message| tracing::debug!(target: "libbpf", "{}", message.trim_end()),
    )));
}

fn run(cli: Cli) -> Result<()> {
    return_big_buffers_to_the_kernel();
    // The web config first: a mistake in it is reported whatever else fails.
    let (tls, auth) = web_security(&cli)?;
    features::require_kernel_btf(features::VMLINUX_BTF.as_ref()).map_err(|e| anyhow!(e))?;
    privileges::require_bpf_capabilities().map_err(|e| anyhow!(e))?;
    // Bind before loading BPF, so a taken port fails fast and attaches nothing.
    let listener = bind(&cli.listen_address)?;

    // The identity facts before BPF: a bad --labels.file attaches nothing.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Capabilities are dropped only while the main thread is alone
        // (kernel/least_privilege.rs): idle blocking threads go quickly.
        .thread_keep_alive(Duration::from_millis(100))
        .build()
        .context("starting the async runtime")?;
    let (resolver, identity_health) = runtime.block_on(start::start(&identity_config(&cli)))?;
    let prices = match &cli.cost_file {
        Some(path) => Some(
            runtime
                .block_on(async { cost::start(path) })
                .map_err(|e| anyhow!("--cost.file: {e}"))?,
        ),
        None => None,
    };

    let config = ProbeConfig {
        flows_max: cli.flows_max,
        sockets_max: cli.sockets_max,
        filter: cli.flow_filter(),
    };
    let mut probe = Probe::attach(cli.probe.backend(), &config)?;
    info!(backend = probe.backend().name(), "counting TCP bytes");
    // Held until exit: statistics stay on only while this fd is open.
    let bpf_stats = cli
        .bpf_stats
        .then(programs::enable)
        .transpose()
        .context("cannot turn on BPF statistics (--bpf.stats needs Linux 5.8+)")?;
    let source = source::open(probe.maps()?).context("starting the flow source")?;
    let table = FlowTable::with_identity(
        cli.flows_max as usize,
        cli.idle_timeout.as_nanos().try_into().unwrap_or(u64::MAX),
        Box::new(resolver),
    )
    .with_selection(cli.flow_labels.unwrap_or_default());
    let (table, cost_stats) = match prices {
        Some((feed, stats)) => (table.with_prices(feed), Some(stats)),
        None => (table, None),
    };
    let programs = probe
        .take_program_handles()
        .context("keeping program handles")?;
    drop_capabilities(&programs, identity_health.conntrack)?;
    let reader = FlowReader::new(source, table, programs, bpf_stats.is_some());
    let state = Arc::new(AppState {
        reader: Arc::new(Mutex::new(reader)),
        info: ExporterInfo {
            version: env!("CARGO_PKG_VERSION"),
            backend: probe.backend().name(),
            flows_max: cli.flows_max,
            sockets_max: cli.sockets_max,
            identity: identity_health,
            cost: cost_stats,
        },
        telemetry_path: cli.telemetry_path.clone(),
        buffers: WarmBuffers::default(),
        auth,
        scrapes: Arc::new(Semaphore::new(web::SCRAPES_IN_FLIGHT)),
    });
    let limits = Limits {
        read_header_timeout: cli.read_header_timeout,
        max_header_bytes: cli.max_header_bytes as usize,
        max_connections: cli.max_connections as usize,
        write_timeout: cli.write_timeout,
    };

    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        info!(address = %listener.local_addr()?, path = %cli.telemetry_path, scheme, "serving metrics");
        let maintenance = tokio::spawn(maintenance::run(state.reader.clone()));
        web::serve(listener, state, limits, tls, shutdown_signal()?).await;
        maintenance.abort();
        Ok::<_, io::Error>(())
    })?;

    drop(runtime);
    drop(probe);
    drop(bpf_stats);
    info!("detached all BPF programs; exiting");
    Ok(())
}

/// Gives up, once everything is attached, each capability but those
/// re-attaching a program (and conntrack lookups) need, which stay
/// permitted only. Capabilities are per thread, so it waits for the
/// runtime's idle blocking threads to end first.
fn drop_capabilities(programs: &[programs::ProgramHandle], conntrack: bool) -> Result<()> {
    let permitted = least_privilege::current()
        .context("reading capabilities")?
        .permitted;
    let reattach = least_privilege::bpf_caps(permitted);
    let conntrack = if conntrack { bit(CAP_NET_ADMIN) } else { 0 };
    least_privilege::keep_bpf_caps(reattach);
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let steady = || match programs.first() {
        Some(program) => programs::ask_kernel(program),
        None => Ok(()),
    };
    least_privilege::drop_after_attach(reattach | conntrack, steady)
        .context("cannot drop capabilities after attach")?;
    Ok(())
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// A scrape allocates the whole response (about 250 bytes per flow) and
/// frees it again. glibc raises its mmap threshold after such a free, up to
/// 32 MiB, and then keeps later responses on the heap of whichever thread
/// built them, so the exporter's RSS settled at several responses' worth
/// (114 MB after scrapes of 100k flows, for a 25 MB response). A fixed
/// threshold serves every big buffer with mmap and returns it on free, and
/// two arenas are plenty for a runtime thread and a few blocking ones.
/// benches/exporter.rs measures the effect.
fn return_big_buffers_to_the_kernel() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tunables; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// TLS and basic auth from --web.config.file, checked whole, certificate
/// files included.
fn web_security(cli: &Cli) -> Result<(Option<Arc<Tls>>, Option<BasicAuth>)> {
    let Some(path) = &cli.web_config_file else {
        return Ok((None, None));
    };
    let config = web::config::load(path)?;
    let tls = config.tls.map(Tls::load).transpose()?.map(Arc::new);
    let auth = (!config.users.is_empty()).then(|| BasicAuth::new(config.users));
    Ok((tls, auth))
}

fn identity_config(cli: &Cli) -> IdentityConfig {
    IdentityConfig {
        kubeconfig: cli.kubeconfig.clone(),
        node_name: start::node_name(cli.node_name.clone()),
        node_zone: cli.node_zone.clone(),
        node_region: cli.node_region.clone(),
        labels_file: cli.labels_file.clone(),
        cgroup_attribution: cli.cgroup_attribution,
        cgroup_root: cli.cgroup_root.clone(),
        conntrack_netns: cli.conntrack_netns.clone(),
    }
}

fn bind(address: &ListenAddress) -> Result<TcpListener> {
    let mut last_error = None;
    for candidate in &address.candidates {
        match TcpListener::bind(candidate) {
            Ok(listener) => {
                listener.set_nonblocking(true)?;
                widen_backlog(&listener);
                return Ok(listener);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(anyhow!(
                    "cannot listen on {}: address already in use",
                    address.text
                ));
            }
            Err(e) => last_error = Some(e),
        }
    }
    let e = last_error.expect("a listen address has at least one candidate");
    Err(anyhow!("cannot listen on {}: {e}", address.text))
}

/// std listens with a queue of 128 connections the exporter has not yet
/// accepted. A burst of connections while the runtime is busy for a few
/// milliseconds overflows it, and each dropped SYN costs its client a 1 s
/// retransmit. Go's listeners ask for the kernel's maximum
/// (net.core.somaxconn); so does this one. A second listen() only changes
/// the queue's length.
fn widen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen() on a socket this function borrows; a negative or too
    // large backlog is capped at somaxconn by the kernel.
    let _ = unsafe { libc::listen(listener.as_raw_fd(), libc::SOMAXCONN.max(4096)) };
}

/// Completes on the first SIGINT or SIGTERM.
fn shutdown_signal() -> io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => info!("SIGINT received, shutting down"),
            _ = terminate.recv() => info!("SIGTERM received, shutting down"),
        }
    })
}
