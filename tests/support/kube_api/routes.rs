//! From a request target to what it asks for: which collection, in which
//! namespace, LIST or WATCH, and with which parameters.

use std::collections::HashMap;

/// A collection request: `/api/v1/pods`, `/api/v1/namespaces/ns/pods`,
/// `/apis/apps/v1/replicasets`, `/apis/apps/v1/namespaces/ns/replicasets`.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    /// The cluster-wide URL of the collection, which names it in the store.
    pub collection: String,
    pub namespace: Option<String>,
}

/// The cluster-wide URL of a resource type's collection.
pub fn collection_path(group: &str, version: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}/{plural}")
    } else {
        format!("/apis/{group}/{version}/{plural}")
    }
}

/// Which collection `path` names, or None for anything else (one object,
/// a subresource, discovery), which this server does not serve.
pub fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // The core group has no group segment: /api/v1/... ; others /apis/g/v/...
    let (group, rest) = match segments.as_slice() {
        ["api", rest @ ..] => ("", rest),
        ["apis", group, rest @ ..] if !group.is_empty() => (*group, rest),
        _ => return None,
    };
    let (version, namespace, plural) = match rest {
        [version, plural] => (*version, None, *plural),
        [version, "namespaces", namespace, plural] => (*version, Some(*namespace), *plural),
        _ => return None,
    };
    let present = |s: &str| !s.is_empty();
    if !(present(version) && present(plural) && namespace.is_none_or(present)) {
        return None;
    }
    Some(Route {
        collection: collection_path(group, version, plural),
        namespace: namespace.map(str::to_string),
    })
}

/// Splits `path?query` and decodes the query's `key=value` pairs. kube-rs
/// starts its queries with '&' (`?&limit=500`), so empty pairs are skipped.
pub fn split_target(target: &str) -> (String, HashMap<String, String>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect();
    (path.to_string(), params)
}

/// Decodes `%XX` escapes and '+' (form encoding, which kube-rs's query
/// builder uses) to bytes; a malformed escape is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|b| (*b as char).to_digit(16))
                .map(|d| d as u8)
        };
        match bytes[i] {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
