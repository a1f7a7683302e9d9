//! The HTTP server: /metrics (or --web.telemetry-path), /, /healthz and
//! /api/flows, served by hyper on the tokio runtime.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::chunked_text::{ChunkedBody, WarmBuffers};
use crate::collector::Collector;
use crate::flow_text::body_estimate;
use crate::flows::Snapshot;
use crate::metrics::{self, ExporterInfo, Format, ScrapeStats};
use crate::program_stats::{self, ProgramHandle};
use crate::{negotiate, pages};

/// How long open connections may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Drained by scrapes and by the background loop ([`maintain`]).
    pub collector: Mutex<Collector>,
    pub programs: Vec<ProgramHandle>,
    /// The exporter holds BPF_ENABLE_STATS (--bpf.stats).
    pub bpf_stats_held: bool,
    pub info: ExporterInfo,
    pub telemetry_path: String,
    pub scrape_errors: AtomicU64,
    /// The last /metrics body's buffers, for the next one.
    pub buffers: WarmBuffers,
}

/// Pages and errors are written whole; /metrics is sent as it is written.
type Body = Either<Full<Bytes>, ChunkedBody>;

/// Serves until `shutdown` completes, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = state.clone();
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            debug!(error = %e, "HTTP connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Usually EMFILE; back off instead of spinning.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("open HTTP connections did not finish within {DRAIN_TIMEOUT:?}; closing them");
    }
}

async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        ));
    }
    let path = req.uri().path();
    let response = if path == state.telemetry_path {
        let accept = header(&req, ACCEPT);
        let format = negotiate::format_for(accept.as_deref());
        let gzip = negotiate::accepts_gzip(header(&req, ACCEPT_ENCODING).as_deref());
        metrics_response(state, format, gzip).await
    } else {
        match path {
            "/" => {
                with_snapshot(state, |state, snapshot| {
                    let html =
                        pages::landing_html(&snapshot, state.info.backend, &state.telemetry_path);
                    typed(html, "text/html; charset=utf-8")
                })
                .await
            }
            "/api/flows" => {
                let limit = query_param(req.uri().query(), "limit").and_then(|v| v.parse().ok());
                with_snapshot(state, move |state, snapshot| {
                    typed(
                        pages::flows_json(&snapshot, state.info.backend, limit),
                        "application/json",
                    )
                })
                .await
            }
            "/healthz" => plain(StatusCode::OK, "ok\n"),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    };
    Ok(response)
}

/// How often the kernel flow table is drained between scrapes. The table
/// only has to hold the flows active within one interval, and idle flows
/// expire with this granularity.
pub const DRAIN_INTERVAL: Duration = Duration::from_secs(1);

/// Drains the kernel flow table and expires idle flows every
/// [`DRAIN_INTERVAL`], off the async runtime: a drain waits for an RCU grace
/// period and takes syscalls.
pub async fn maintain(state: Arc<AppState>) {
    let mut interval = tokio::time::interval(DRAIN_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let state = state.clone();
        let result = tokio::task::spawn_blocking(move || {
            let outcome = lock(&state.collector).maintain();
            if let Err(e) = &outcome {
                state.scrape_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "draining the kernel flow table failed");
            }
        })
        .await;
        if let Err(e) = result {
            warn!(error = %e, "the drain task failed");
        }
    }
}

/// The collector, also after a panic elsewhere left its lock poisoned: its
/// totals are plain numbers that stay consistent between statements.
fn lock(collector: &Mutex<Collector>) -> std::sync::MutexGuard<'_, Collector> {
    collector
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads the maps off the async runtime (a big table takes milliseconds of
/// syscalls) and answers as soon as that worked: the body follows while it
/// is written, holding the flow table meanwhile.
async fn metrics_response(state: Arc<AppState>, format: Format, gzip: bool) -> Response<Body> {
    let (ready, answer) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let mut collector = lock(&state.collector);
        let mut snapshot = match collector.refresh() {
            Ok(snapshot) => snapshot,
            Err(e) => {
                state.scrape_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "reading the BPF maps failed");
                let _ = ready.send(Err(e));
                return;
            }
        };
        snapshot.programs = program_stats::read(&state.programs);
        snapshot.bpf_stats_enabled = state.bpf_stats_held || program_stats::sysctl_enabled();
        let table = collector.table();
        let (mut text, body) = state.buffers.writer(body_estimate(table.len()), gzip);
        if ready.send(Ok(body)).is_err() {
            return; // the request is gone
        }
        let stats = ScrapeStats {
            errors: state.scrape_errors.load(Ordering::Relaxed),
        };
        metrics::encode(
            &mut text,
            table,
            Arc::new(snapshot),
            &state.info,
            stats,
            format,
        );
        state.buffers.finish(text);
    });
    let mut response = match answer.await {
        Ok(Ok(body)) => Response::new(Either::Right(body)),
        Ok(Err(e)) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the BPF maps failed: {e}\n"),
            )
        }
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "scrape task failed\n"),
    };
    set(&mut response, CONTENT_TYPE, format.content_type());
    set(&mut response, VARY, "Accept, Accept-Encoding");
    if gzip {
        set(&mut response, CONTENT_ENCODING, "gzip");
    }
    response
}

/// Reads the maps and copies the flows off the async runtime (a big table
/// takes milliseconds of syscalls) and renders them with `render`: for the
/// pages, which sort the flows and show few of them.
async fn with_snapshot<F>(state: Arc<AppState>, render: F) -> Response<Body>
where
    F: FnOnce(&AppState, Snapshot) -> Response<Body> + Send + 'static,
{
    let task = tokio::task::spawn_blocking(move || {
        let snapshot = lock(&state.collector).snapshot();
        match snapshot {
            Ok(mut snapshot) => {
                snapshot.programs = program_stats::read(&state.programs);
                snapshot.bpf_stats_enabled =
                    state.bpf_stats_held || program_stats::sysctl_enabled();
                render(&state, snapshot)
            }
            Err(e) => {
                state.scrape_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "reading the BPF maps failed");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading the BPF maps failed: {e}\n"),
                )
            }
        }
    });
    task.await.unwrap_or_else(|e| {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("scrape task failed: {e}\n"),
        )
    })
}

fn header(req: &Request<Incoming>, name: hyper::header::HeaderName) -> Option<String> {
    // A header may be split over several lines; its values then join with ','.
    let values: Vec<&str> = req
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn body(text: impl Into<Bytes>) -> Response<Body> {
    Response::new(Either::Left(Full::new(text.into())))
}

fn typed(text: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut response = body(text);
    set(&mut response, CONTENT_TYPE, content_type);
    response
}

fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut response = typed(text, "text/plain; charset=utf-8");
    *response.status_mut() = status;
    response
}

fn set(response: &mut Response<Body>, name: hyper::header::HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("limit=5"), "limit"), Some("5"));
        assert_eq!(query_param(Some("a=1&limit=7"), "limit"), Some("7"));
        assert_eq!(query_param(Some("limits=7"), "limit"), None);
        assert_eq!(query_param(None, "limit"), None);
    }
}
