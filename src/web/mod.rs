//! The web server: /metrics (or --web.telemetry-path), /, /healthz and
//! /api/flows, served by hyper on the tokio runtime, behind the web
//! config's TLS and basic auth (config, tls, auth) and the connection
//! limits (server, connections, stall). It reads the flows when asked and
//! runs no background work of its own.

mod auth;
pub mod config;
mod connections;
mod metrics;
pub mod pages;
mod responses;
mod server;
mod stall;
pub mod tls;

pub use auth::BasicAuth;
pub use server::{serve, Limits};

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::Semaphore;
use tracing::warn;

use crate::exposition::chunked::WarmBuffers;
use crate::exposition::{format, ExporterInfo};
use crate::flows::reader::lock;
use crate::flows::{FlowReader, Snapshot};
use responses::{header, plain, query_param, set, typed, Body};

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Read by scrapes and by the maintenance loop.
    pub reader: Arc<Mutex<FlowReader>>,
    pub info: ExporterInfo,
    pub telemetry_path: String,
    /// The last /metrics body's buffers, for the next one.
    pub buffers: WarmBuffers,
    /// basic_auth_users of the web config: every path needs them.
    pub auth: Option<BasicAuth>,
    /// /metrics bodies being written or sent; each holds its memory (about
    /// 250 bytes per flow) until its last byte is sent.
    pub scrapes: Arc<Semaphore>,
}

/// /metrics bodies in flight at once. A client that stops reading holds
/// one until --web.write-timeout, so memory stays bounded by this many
/// bodies whatever clients do, and a scrape waits for a place at most
/// that long.
pub const SCRAPES_IN_FLIGHT: usize = 4;

async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(auth) = &state.auth {
        let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
        if !auth.allows(header).await {
            let mut response = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            set(
                &mut response,
                WWW_AUTHENTICATE,
                "Basic realm=\"tcp-flow-exporter\", charset=\"UTF-8\"",
            );
            return Ok(response);
        }
    }
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
