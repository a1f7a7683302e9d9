//! A WATCH stream: the changes after the asked-for resourceVersion as JSON
//! lines in chunks, a BOOKMARK every second when the client allows them,
//! and the end after `timeoutSeconds`.
//!
//! A watch from a compacted version gets what a real API server sends:
//! HTTP 200, then one `ERROR` event whose object is a `Status` with code 410
//! (reason `Expired`), then the end. kube-rs's watcher relists only on that
//! event; an HTTP 410 answer to the watch request itself would make it retry
//! the same old version forever.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use super::handlers::{log, Query};
use super::http::{end_chunked, start_chunked, status, write_chunk, write_json, Request};
use super::server::Shared;
use super::store::Event;

const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// A real server picks 30 to 60 minutes when the client sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

enum Next {
    Events(Vec<Event>),
    Bookmark(u64),
    Expired {
        from: u64,
        oldest: u64,
    },
    TimedOut,
    /// The server restarted or stopped: the connection is already shut down.
    Dropped,
}

pub fn serve(
    shared: &Shared,
    stream: &TcpStream,
    generation: u64,
    request: &Request,
    query: &Query,
) {
    let timeout = match query.param("timeoutSeconds") {
        "" => Ok(DEFAULT_TIMEOUT),
        text => text.parse().map(Duration::from_secs),
    };
    // "" and "0" mean "from any point": the current objects as ADDED first.
    let from = match query.param("resourceVersion") {
        "" | "0" => Ok(None),
        text => text.parse::<u64>().map(Some),
    };
    let (Ok(timeout), Ok(from)) = (timeout, from) else {
        let message = "resourceVersion and timeoutSeconds must be numbers";
        log(shared, request, 400);
        let _ = write_json(stream, 400, &status(400, "BadRequest", message));
        return;
    };
    log(shared, request, 200);
    if start_chunked(stream).is_err() {
        return;
    }
    let _open = OpenWatch::new(shared);
    let bookmarks = query.param("allowWatchBookmarks") == "true";
    let collection = query.route.collection.as_str();
    let namespace = query.route.namespace.as_deref();
    let deadline = Instant::now() + timeout;
    let mut next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
    let mut position = match from {
        Some(version) => version,
        None => {
            let (snapshot, current) = {
                let state = shared.lock();
                let store = &state.store;
                (store.snapshot(collection, namespace), store.current())
            };
            if send_events(stream, query, snapshot).is_err() {
                return;
            }
            current
        }
    };
    loop {
        let next = {
            let mut state = shared.lock();
            loop {
                if state.stopped || state.generation != generation {
                    break Next::Dropped;
                }
                let store = &state.store;
                if store.is_compacted(position) {
                    let oldest = store.current();
                    break Next::Expired {
                        from: position,
                        oldest,
                    };
                }
                let events = store.events_after(collection, namespace, position);
                if !events.is_empty() {
                    break Next::Events(events);
                }
                let now = Instant::now();
                if now >= deadline {
                    break Next::TimedOut;
                }
                if bookmarks && now >= next_bookmark {
                    break Next::Bookmark(store.current());
                }
                let wake = if bookmarks {
                    deadline.min(next_bookmark)
                } else {
                    deadline
                };
                state = shared
                    .changed
                    .wait_timeout(state, wake - now)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
        };
        let sent = match next {
            Next::Events(events) => {
                position = events.last().map_or(position, |e| e.resource_version);
                send_events(stream, query, events)
            }
            Next::Bookmark(version) => {
                // Every change to this collection up to `version` is sent
                // (none was pending under the lock), so the client may
                // resume from it.
                position = version;
                next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
                let (kind, api_version) = query.type_meta();
                let object = json!({
                    "kind": kind,
                    "apiVersion": api_version,
                    "metadata": { "resourceVersion": version.to_string() },
                });
                write_chunk(stream, &json!({ "type": "BOOKMARK", "object": object }))
            }
            Next::Expired { from, oldest } => {
                let message = format!("too old resource version: {from} ({oldest})");
                let object = status(410, "Expired", &message);
                let _ = write_chunk(stream, &json!({ "type": "ERROR", "object": object }));
                let _ = end_chunked(stream);
                return;
            }
            Next::TimedOut => {
                let _ = end_chunked(stream);
                return;
            }
            Next::Dropped => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

fn send_events(stream: &TcpStream, query: &Query, events: Vec<Event>) -> std::io::Result<()> {
    for event in events {
        let line = json!({
            "type": event.change.wire_name(),
            "object": query.shape(event.object),
        });
        write_chunk(stream, &line)?;
    }
    Ok(())
}

/// Counts an open watch stream for `wait_for_watchers` while it lives.
struct OpenWatch<'a>(&'a Shared);

impl<'a> OpenWatch<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.lock().open_watches += 1;
        shared.changed.notify_all();
        OpenWatch(shared)
    }
}

impl Drop for OpenWatch<'_> {
    fn drop(&mut self) {
        self.0.lock().open_watches -= 1;
        self.0.changed.notify_all();
    }
}
