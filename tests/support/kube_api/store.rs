//! The test API server's etcd: objects by collection, namespace and name,
//! one global resourceVersion counter, and the log of every change so that a
//! watch can replay what happened after the version it asks for.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// What a collection holds: its URL (`/api/v1/pods`, `/apis/apps/v1/replicasets`)
/// names it, and a list of it is a `{kind}List` of `api_version`.
#[derive(Clone, Debug)]
pub struct Kind {
    pub kind: String,
    pub api_version: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

impl Change {
    pub fn wire_name(self) -> &'static str {
        match self {
            Change::Added => "ADDED",
            Change::Modified => "MODIFIED",
            Change::Deleted => "DELETED",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Event {
    pub resource_version: u64,
    pub collection: String,
    pub namespace: String,
    pub change: Change,
    pub object: Value,
}

/// One page of a LIST: the objects, the version the whole list is consistent
/// at (every page of one list reports the first page's version, as a real
/// server does), and the token for the next page.
pub struct Page {
    pub resource_version: u64,
    pub items: Vec<Value>,
    pub continue_token: Option<String>,
}

/// Why a list could not be served.
#[derive(Debug, PartialEq, Eq)]
pub enum ListError {
    /// The continue token was taken before the last compaction (HTTP 410).
    Expired,
    /// The continue token is not one this server gave out (HTTP 400).
    BadToken(String),
}

#[derive(Default)]
pub struct Store {
    /// The newest resourceVersion handed out.
    current: u64,
    /// Versions below this one are compacted: a watch from them gets 410.
    oldest_valid: u64,
    kinds: BTreeMap<String, Kind>,
    /// (collection, namespace, name) → the object as served, versions filled in.
    objects: BTreeMap<(String, String, String), Value>,
    /// Every change, oldest first; resource versions strictly increase.
    events: Vec<Event>,
}

impl Store {
    pub fn register(&mut self, collection: &str, kind: Kind) {
        self.kinds.insert(collection.to_string(), kind);
    }

    pub fn kind(&self, collection: &str) -> Option<&Kind> {
        self.kinds.get(collection)
    }

    pub fn current(&self) -> u64 {
        self.current
    }

    pub fn is_compacted(&self, resource_version: u64) -> bool {
        resource_version < self.oldest_valid
    }

    /// Creates or replaces the object named in `object`'s metadata, gives it
    /// the next resourceVersion (and a uid if it has none), and logs the
    /// change. Returns the version given.
    pub fn apply(&mut self, collection: &str, mut object: Value) -> u64 {
        self.current += 1;
        let version = self.current;
        let (namespace, name) = namespace_and_name(&object);
        let key = (collection.to_string(), namespace.clone(), name.clone());
        let metadata = &mut object["metadata"];
        metadata["resourceVersion"] = json!(version.to_string());
        if metadata["uid"].as_str().unwrap_or("").is_empty() {
            metadata["uid"] = json!(format!("uid-{collection}-{namespace}-{name}-{version}"));
        }
        let change = match self.objects.insert(key, object.clone()) {
            Some(_) => Change::Modified,
            None => Change::Added,
        };
        self.log(collection, namespace, change, object);
        version
    }

    /// Removes the object and logs its DELETED event, which carries the last
    /// state with the deletion's own resourceVersion (the watcher takes its
    /// resume point from it). Returns false when there was no such object.
    pub fn delete(&mut self, collection: &str, namespace: &str, name: &str) -> bool {
        let key = (
            collection.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let Some(mut object) = self.objects.remove(&key) else {
            return false;
        };
        self.current += 1;
        object["metadata"]["resourceVersion"] = json!(self.current.to_string());
        self.log(collection, namespace.to_string(), Change::Deleted, object);
        true
    }

    /// Makes every version handed out so far too old. The counter moves on
    /// by one so that a relist gets a version that is valid to watch from;
    /// without that, the relist's version would be compacted too and the
    /// client would loop.
    pub fn compact(&mut self) {
        self.current += 1;
        self.oldest_valid = self.current;
        self.events.clear();
    }

    /// One page of the objects in `collection` (in `namespace` if given),
    /// ordered by namespace then name, at most `limit` (0: all), starting
    /// after the object the continue token names.
    pub fn list(
        &self,
        collection: &str,
        namespace: Option<&str>,
        limit: usize,
        continue_token: Option<&str>,
    ) -> Result<Page, ListError> {
        let (resource_version, after) = match continue_token {
            None => (self.current, None),
            Some(token) => {
                let (version, namespace, name) = parse_token(token)?;
                if self.is_compacted(version) {
                    return Err(ListError::Expired);
                }
                (version, Some((namespace, name)))
            }
        };
        let mut matching = self
            .objects
            .iter()
            .filter(|((c, ns, _), _)| c == collection && namespace.is_none_or(|want| ns == want))
            .filter(|((_, ns, name), _)| {
                after
                    .as_ref()
                    .is_none_or(|(a_ns, a_name)| (ns, name) > (a_ns, a_name))
            });
        let take = if limit == 0 { usize::MAX } else { limit };
        let mut items = Vec::new();
        let mut last = None;
        for ((_, ns, name), object) in matching.by_ref().take(take) {
            items.push(object.clone());
            last = Some((ns, name));
        }
        let continue_token = match (matching.next(), last) {
            (Some(_), Some((ns, name))) => Some(format!("{resource_version}/{ns}/{name}")),
            _ => None,
        };
        Ok(Page {
            resource_version,
            items,
            continue_token,
        })
    }

    /// The objects now in `collection`, as ADDED events: what a watch from
    /// version "0" starts with.
    pub fn snapshot(&self, collection: &str, namespace: Option<&str>) -> Vec<Event> {
        self.objects
            .iter()
            .filter(|((c, ns, _), _)| c == collection && namespace.is_none_or(|want| ns == want))
            .map(|((c, ns, _), object)| Event {
                resource_version: self.current,
                collection: c.clone(),
                namespace: ns.clone(),
                change: Change::Added,
                object: object.clone(),
            })
            .collect()
    }

    /// The changes to `collection` after `resource_version`, oldest first.
    pub fn events_after(
        &self,
        collection: &str,
        namespace: Option<&str>,
        resource_version: u64,
    ) -> Vec<Event> {
        let start = self
            .events
            .partition_point(|e| e.resource_version <= resource_version);
        self.events[start..]
            .iter()
            .filter(|e| e.collection == collection)
            .filter(|e| namespace.is_none_or(|want| e.namespace == want))
            .cloned()
            .collect()
    }

    fn log(&mut self, collection: &str, namespace: String, change: Change, object: Value) {
        self.events.push(Event {
            resource_version: self.current,
            collection: collection.to_string(),
            namespace,
            change,
            object,
        });
    }
}

fn namespace_and_name(object: &Value) -> (String, String) {
    let metadata = &object["metadata"];
    let text = |field: &str| metadata[field].as_str().unwrap_or("").to_string();
    (text("namespace"), text("name"))
}

/// A continue token is `{list version}/{namespace}/{name}` of the last
/// object served: names and namespaces cannot hold '/', so it splits back.
fn parse_token(token: &str) -> Result<(u64, String, String), ListError> {
    let bad = || ListError::BadToken(token.to_string());
    let mut parts = token.splitn(3, '/');
    let version = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let namespace = parts.next().ok_or_else(bad)?;
    let name = parts.next().ok_or_else(bad)?;
    Ok((version, namespace.to_string(), name.to_string()))
}
