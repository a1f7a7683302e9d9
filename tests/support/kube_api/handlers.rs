//! One connection, one request: refuse what is forbidden or unknown, answer
//! a LIST, or hand a WATCH to its stream.

use std::collections::HashMap;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{read_request, status, write_json, Request};
use super::routes::{route, split_target, Route};
use super::server::Shared;
use super::store::{Kind, ListError};
use super::watch;

/// kube-rs's `metadata_watcher` asks for metadata only through the Accept
/// header: `application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`
/// for lists, `...as=PartialObjectMetadata;...` for watches.
const METADATA_ONLY: &str = "as=PartialObjectMetadata";

/// What a LIST or WATCH asked for, parsed.
pub struct Query {
    pub route: Route,
    pub kind: Kind,
    pub params: HashMap<String, String>,
    pub metadata_only: bool,
}

pub fn handle_connection(shared: &Shared, stream: &TcpStream, generation: u64) {
    // A client that stalls must not hold a thread (or a test) forever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(request) = read_request(stream) else {
        return;
    };
    let reply = |code: u16, body: Value| {
        log(shared, &request, code);
        let _ = write_json(stream, code, &body);
    };
    let (path, params) = split_target(&request.target);
    if request.method != "GET" {
        let message = format!("{} is not served by the test API server", request.method);
        return reply(405, status(405, "MethodNotAllowed", &message));
    }
    let forbidden = shared
        .lock()
        .forbidden
        .iter()
        .any(|prefix| path.starts_with(prefix.as_str()));
    if forbidden {
        let message = format!("{path} is forbidden: the test forbade it");
        return reply(403, status(403, "Forbidden", &message));
    }
    let route = route(&path);
    let kind = route
        .as_ref()
        .and_then(|r| shared.lock().store.kind(&r.collection).cloned());
    let (Some(route), Some(kind)) = (route, kind) else {
        let message = "the server could not find the requested resource";
        return reply(404, status(404, "NotFound", message));
    };
    let query = Query {
        route,
        kind,
        metadata_only: request.accept.contains(METADATA_ONLY),
        params,
    };
    if matches!(query.param("watch"), "true" | "1") {
        watch::serve(shared, stream, generation, &request, &query);
    } else {
        let (code, body) = list(shared, &query);
        reply(code, body);
    }
}

impl Query {
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }

    /// The object as this request wants it: whole, or as the
    /// PartialObjectMetadata a metadata-only client asked for.
    pub fn shape(&self, object: Value) -> Value {
        if !self.metadata_only {
            return object;
        }
        let mut object = object;
        json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"].take(),
        })
    }

    /// kind and apiVersion of one object in this response.
    pub fn type_meta(&self) -> (String, String) {
        if self.metadata_only {
            ("PartialObjectMetadata".into(), "meta.k8s.io/v1".into())
        } else {
            (self.kind.kind.clone(), self.kind.api_version.clone())
        }
    }
}

/// A LIST page. `resourceVersion` and `resourceVersionMatch` are accepted
/// and ignored: every list is served from the newest state, which is what
/// any of their values allows.
fn list(shared: &Shared, query: &Query) -> (u16, Value) {
    let limit = match query.param("limit") {
        "" => 0,
        text => match text.parse::<usize>() {
            Ok(limit) => limit,
            Err(_) => {
                let message = format!("limit {text:?} is not a number");
                return (400, status(400, "BadRequest", &message));
            }
        },
    };
    let continue_token = Some(query.param("continue")).filter(|t| !t.is_empty());
    let namespace = query.route.namespace.as_deref();
    let page = shared
        .lock()
        .store
        .list(&query.route.collection, namespace, limit, continue_token);
    let page = match page {
        Ok(page) => page,
        Err(ListError::Expired) => {
            let message = "The provided continue parameter is too old to display a \
                           consistent list result. You can start a new list without \
                           the continue parameter.";
            return (410, status(410, "Expired", message));
        }
        Err(ListError::BadToken(token)) => {
            let message = format!("continue token {token:?} is not one this server gave");
            return (400, status(400, "BadRequest", &message));
        }
    };
    let (kind, api_version) = query.type_meta();
    let mut metadata = json!({ "resourceVersion": page.resource_version.to_string() });
    if let Some(token) = page.continue_token {
        metadata["continue"] = json!(token);
    }
    let items: Vec<Value> = page.items.into_iter().map(|o| query.shape(o)).collect();
    let body = json!({
        "kind": format!("{kind}List"),
        "apiVersion": api_version,
        "metadata": metadata,
        "items": items,
    });
    (200, body)
}

/// Records `GET /api/v1/pods?&limit=2 200` for the test, and prints it: the
/// harness shows a test's output when it fails.
pub fn log(shared: &Shared, request: &Request, code: u16) {
    let line = format!("{} {} {code}", request.method, request.target);
    let metadata_only = request.accept.contains(METADATA_ONLY);
    let shape = if metadata_only {
        " (metadata only)"
    } else {
        ""
    };
    eprintln!("test API server: {line}{shape}");
    shared.lock().log.push((line, metadata_only));
    shared.changed.notify_all();
}
