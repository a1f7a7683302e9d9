//! The /metrics response: read the kernel, then stream the text.

use std::sync::Arc;

use http_body_util::Either;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::{Response, StatusCode};

use super::responses::{plain, set, Body};
use super::server::ScrapePermit;
use super::{read_failed, AppState};
use crate::exposition::flow_families::body_estimate;
use crate::exposition::{self, Format};
use crate::flows::reader::lock;

/// Reads the maps off the async runtime (a big table takes milliseconds of
/// syscalls) and answers as soon as that worked: the body follows while it
/// is written, holding the flow table meanwhile.
///
/// A place among [`super::SCRAPES_IN_FLIGHT`] bodies is waited for first,
/// and goes with the response until its last byte is sent.
pub async fn response(state: Arc<AppState>, format: Format, gzip: bool) -> Response<Body> {
    let Ok(permit) = state.scrapes.clone().acquire_owned().await else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    };
    let (ready, answer) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let mut reader = lock(&state.reader);
        let snapshot = match reader.refresh() {
            Ok(snapshot) => snapshot,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let table = reader.table();
        let (mut text, body) = state.buffers.writer(body_estimate(table.len()), gzip);
        if ready.send(Ok(body)).is_err() {
            return; // the request is gone
        }
        exposition::encode(&mut text, table, Arc::new(snapshot), &state.info, format);
        state.buffers.finish(text);
    });
    let mut response = match answer.await {
        Ok(Ok(body)) => Response::new(Either::Right(body)),
        Ok(Err(e)) => return read_failed(&e),
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "scrape task failed\n"),
    };
    set(&mut response, CONTENT_TYPE, format.content_type());
    set(&mut response, VARY, "Accept, Accept-Encoding");
    if gzip {
        set(&mut response, CONTENT_ENCODING, "gzip");
    }
    response
        .extensions_mut()
        .insert(ScrapePermit(Arc::new(permit)));
    response
}
