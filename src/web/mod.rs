//! The web server: /metrics (or --web.telemetry-path), /, /healthz and
//! /api/flows, served by hyper on the tokio runtime. It reads the flows
//! when asked and runs no background work of its own.

mod metrics;
pub mod pages;
mod responses;

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{ACCEPT, ACCEPT_ENCODING};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::exposition::chunked::WarmBuffers;
use crate::exposition::{format, ExporterInfo};
use crate::flows::reader::lock;
use crate::flows::{FlowReader, Snapshot};
use responses::{header, plain, query_param, typed, Body};

/// How long open connections may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Read by scrapes and by the maintenance loop.
    pub reader: Arc<Mutex<FlowReader>>,
    pub info: ExporterInfo,
    pub telemetry_path: String,
    /// The last /metrics body's buffers, for the next one.
    pub buffers: WarmBuffers,
}

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
        let format = format::format_for(header(&req, ACCEPT).as_deref());
        let gzip = format::accepts_gzip(header(&req, ACCEPT_ENCODING).as_deref());
        metrics::response(state, format, gzip).await
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

/// Reads the maps and copies the flows off the async runtime (a big table
/// takes milliseconds of syscalls) and renders them with `render`: for the
/// pages, which sort the flows and show few of them.
async fn with_snapshot<F>(state: Arc<AppState>, render: F) -> Response<Body>
where
    F: FnOnce(&AppState, Snapshot) -> Response<Body> + Send + 'static,
{
    let task = tokio::task::spawn_blocking(move || {
        let snapshot = lock(&state.reader).snapshot();
        match snapshot {
            Ok(snapshot) => render(&state, snapshot),
            Err(e) => read_failed(&e),
        }
    });
    task.await.unwrap_or_else(|e| {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("scrape task failed: {e}\n"),
        )
    })
}

/// The answer to a request whose read of the BPF maps failed.
fn read_failed(e: &std::io::Error) -> Response<Body> {
    warn!(error = %e, "reading the BPF maps failed");
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("reading the BPF maps failed: {e}\n"),
    )
}
