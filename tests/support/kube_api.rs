//! A test Kubernetes API server: the real list/watch protocol over plain
//! HTTP on 127.0.0.1, for the exporter's real kube-rs client, reached
//! through the kubeconfig file it writes. The test machines have no cluster.
//!
//! It serves LIST (with `limit`/`continue` pages) and WATCH (chunked JSON
//! lines, bookmarks, `timeoutSeconds`, the 410 ERROR event after a
//! compaction) for every collection it knows: Pods, Services, Nodes,
//! apps/v1 ReplicaSets and batch/v1 Jobs from the start, and any other type
//! once a test applies one. Both the cluster-wide and the namespaced URLs
//! work, and a metadata-only Accept header gets PartialObjectMetadata.
//! Anything else is a 404 Status. Plain threads and blocking sockets: every
//! wait has a deadline, and dropping the server ends its threads.
//!
//! ```ignore
//! let api = KubeApi::start();
//! api.apply(&pod("default", "web-1", "uid-1", "10.0.0.5", "node-a", "Running"));
//! exporter.arg("--kubernetes.kubeconfig").arg(api.kubeconfig());
//! ```

mod driving;
mod handlers;
mod http;
mod objects;
mod routes;
mod server;
mod store;
mod watch;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};

// Each test binary uses some of the builders and helpers.
#[allow(unused_imports)]
pub use driving::{client, next_event, until_watching, within, WAIT};
#[allow(unused_imports)]
pub use objects::{
    host_network_pod, job, node, owned_by, pod, replica_set, service, started_at, REGION_LABEL,
    ZONE_LABEL,
};

use routes::collection_path;
use server::{accept_loop, Shared};
use store::Kind;

/// How long `restart` keeps the port closed.
const DOWN_FOR: Duration = Duration::from_millis(300);

pub struct KubeApi {
    shared: Arc<Shared>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    accept_thread: Option<JoinHandle<()>>,
}

impl KubeApi {
    /// Listens on 127.0.0.1, on a port the kernel picks, and writes the
    /// kubeconfig for it.
    pub fn start() -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|error| panic!("test API server: cannot listen: {error}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("test API server: no local address: {error}"));
        let shared = Arc::new(Shared::new());
        let api = KubeApi {
            kubeconfig: write_kubeconfig(addr),
            shared: Arc::clone(&shared),
            addr,
            accept_thread: Some(thread::spawn(move || accept_loop(shared, listener, addr))),
        };
        api.register::<Pod>();
        api.register::<Service>();
        api.register::<Node>();
        api.register::<ReplicaSet>();
        api.register::<Job>();
        api
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig file with one cluster at `url()`, one context, and a user
    /// without credentials. It is removed when the server is dropped.
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    /// Creates the object, or replaces the one with its namespace and name:
    /// it gets the next resourceVersion (and a uid when it has none), and
    /// open watches get ADDED or MODIFIED. Returns the resourceVersion.
    pub fn apply<K: serde::Serialize + k8s_openapi::Resource>(&self, object: &K) -> u64 {
        let collection = self.register::<K>();
        let value = serde_json::to_value(object).unwrap_or_else(|error| {
            panic!("test API server: cannot serialize a {}: {error}", K::KIND)
        });
        if value["metadata"]["name"].as_str().unwrap_or("").is_empty() {
            panic!(
                "test API server: a {} to apply needs metadata.name",
                K::KIND
            );
        }
        let version = self.shared.lock().store.apply(&collection, value);
        self.shared.changed.notify_all();
        version
    }

    /// Deletes the object: open watches get DELETED with its last state.
    /// Panics when there is no such object, which is a mistake in the test.
    pub fn delete<K: k8s_openapi::Resource>(&self, namespace: Option<&str>, name: &str) {
        let collection = self.register::<K>();
        let namespace = namespace.unwrap_or("");
        let deleted = self
            .shared
            .lock()
            .store
            .delete(&collection, namespace, name);
        assert!(
            deleted,
            "test API server: no {} {namespace}/{name} to delete",
            K::KIND
        );
        self.shared.changed.notify_all();
    }

    /// Compacts history: every resourceVersion handed out so far is too old.
    /// Open watches get the 410 ERROR event and end, and so does the next
    /// watch from an old version; the client must relist.
    pub fn compact(&self) {
        self.shared.lock().store.compact();
        self.shared.changed.notify_all();
    }

    /// An API server restart: drops every open connection, refuses new ones
    /// for a moment (the port is closed), then listens on the same port
    /// again. Objects and versions are kept, so watches resume.
    pub fn restart(&self) {
        self.go_down();
        thread::sleep(DOWN_FOR);
        self.come_back();
    }

    /// The first half of `restart`: every connection is dropped and the
    /// port refuses connections until `come_back`. `apply` and `delete`
    /// still work meanwhile, for changes made while clients were away.
    pub fn go_down(&self) {
        self.shared.go_down(self.addr);
    }

    /// Listens on the same port again after `go_down`.
    pub fn come_back(&self) {
        self.shared.listen_again();
    }

    /// Answers requests whose path starts with `path_prefix` (such as
    /// `/api/v1/nodes`) with 403 Forbidden while `forbidden`, as a missing
    /// RBAC rule does.
    pub fn forbid(&self, path_prefix: &str, forbidden: bool) {
        let mut state = self.shared.lock();
        state.forbidden.retain(|prefix| prefix != path_prefix);
        if forbidden {
            state.forbidden.push(path_prefix.to_string());
        }
    }

    /// Every request so far, as `GET /api/v1/pods?&limit=2 200`: method,
    /// path and query as sent, and the HTTP status (200 for a watch stream,
    /// whatever it carried).
    pub fn requests(&self) -> Vec<String> {
        let state = self.shared.lock();
        state.log.iter().map(|(line, _)| line.clone()).collect()
    }

    /// The requests, as in `requests`, whose Accept header asked for
    /// PartialObjectMetadata: what a metadata-only watcher sends.
    pub fn metadata_only_requests(&self) -> Vec<String> {
        let state = self.shared.lock();
        let metadata_only = state.log.iter().filter(|(_, metadata_only)| *metadata_only);
        metadata_only.map(|(line, _)| line.clone()).collect()
    }

    /// Waits until exactly `n` watch streams are open; false on timeout.
    pub fn wait_for_watchers(&self, n: usize, timeout: Duration) -> bool {
        self.shared
            .wait_until(timeout, |state| state.open_watches == n)
    }

    /// Waits until a request whose logged line contains `needle` has been
    /// made; false on timeout.
    pub fn wait_for_request(&self, needle: &str, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |state| {
            state.log.iter().any(|(line, _)| line.contains(needle))
        })
    }

    /// The newest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().store.current()
    }

    /// Makes `K`'s collection known (so an empty one lists, not 404s) and
    /// returns its cluster-wide URL, which names it in the store.
    fn register<K: k8s_openapi::Resource>(&self) -> String {
        let collection = collection_path(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT);
        let kind = Kind {
            kind: K::KIND.to_string(),
            api_version: K::API_VERSION.to_string(),
        };
        self.shared.lock().store.register(&collection, kind);
        collection
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.shared.stop(self.addr);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn write_kubeconfig(addr: SocketAddr) -> PathBuf {
    let path = super::temp_path("kubeconfig.yaml");
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: test\n  cluster:\n    server: http://{addr}\n\
         contexts:\n\
         - name: test\n  context:\n    cluster: test\n    user: test\n\
         current-context: test\n\
         users:\n\
         - name: test\n  user: {{}}\n"
    );
    std::fs::write(&path, text)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    path
}
