//! `run` end to end through the real kube-rs client, against a minimal
//! server on 127.0.0.1 that answers each list with fixed objects and holds
//! each watch open. (The full fake API server, with pagination, bookmarks
//! and 410 Gone, lives with the integration tests.)

use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::identity::kubernetes::{connect, KubeSettings, WatchState};
use crate::identity::{PeerKind, Place};

type Answer = fn(path: &str) -> Option<String>;

/// Serves `answer(path)` as JSON to lists (403 when it gives `None`), and
/// an endless empty stream to watches.
async fn api_server(answer: Answer) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service_fn(move |request| respond(answer, request));
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    port
}

async fn respond(
    answer: Answer,
    request: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let query = request.uri().query().unwrap_or_default();
    let response = Response::builder().header("content-type", "application/json");
    if query.contains("watch=true") {
        let forever = futures::stream::pending::<Result<Frame<Bytes>, Infallible>>();
        return Ok(response
            .body(BodyExt::boxed(StreamBody::new(forever)))
            .unwrap());
    }
    let (status, body) = match answer(request.uri().path()) {
        Some(list) => (200, list),
        None => (403, FORBIDDEN.to_owned()),
    };
    Ok(response
        .status(status)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap())
}

const FORBIDDEN: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure",
    "message":"pods is forbidden: User \"system:anonymous\" cannot list resource","reason":"Forbidden","code":403}"#;

fn list(items: &str) -> String {
    format!(
        r#"{{"kind":"List","apiVersion":"v1","metadata":{{"resourceVersion":"5"}},"items":[{items}]}}"#
    )
}

fn small_cluster(path: &str) -> Option<String> {
    Some(list(match path {
        "/api/v1/pods" => {
            r#"{"metadata":{"name":"web-5d4f8-x2","namespace":"shop","uid":"p1","resourceVersion":"3",
                "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d4f8","uid":"rs1","controller":true}]},
               "spec":{"nodeName":"node-b","containers":[{"name":"web","image":"nginx"}]},
               "status":{"phase":"Running","podIP":"10.1.2.3","podIPs":[{"ip":"10.1.2.3"}]}}"#
        }
        "/api/v1/services" => {
            r#"{"metadata":{"name":"web","namespace":"shop","uid":"s1","resourceVersion":"4"},
               "spec":{"clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"]}}"#
        }
        "/api/v1/nodes" => {
            r#"{"metadata":{"name":"node-a","uid":"n1","resourceVersion":"2",
                 "labels":{"topology.kubernetes.io/zone":"eu-west-1a","topology.kubernetes.io/region":"eu-west-1"}},
                "status":{"addresses":[{"type":"InternalIP","address":"192.168.1.10"}]}},
               {"metadata":{"name":"node-b","uid":"n2","resourceVersion":"2",
                 "labels":{"topology.kubernetes.io/zone":"eu-west-1b","topology.kubernetes.io/region":"eu-west-1"}},
                "status":{"addresses":[{"type":"InternalIP","address":"192.168.1.11"}]}}"#
        }
        "/apis/apps/v1/replicasets" => {
            r#"{"metadata":{"name":"web-5d4f8","namespace":"shop","uid":"rs1","resourceVersion":"1",
                "ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"web","uid":"d1","controller":true}]}}"#
        }
        "/apis/batch/v1/jobs" => "",
        _ => return None,
    }))
}

fn forbid_all(_: &str) -> Option<String> {
    None
}

async fn client_for(port: u16) -> Client {
    let path: PathBuf = std::env::temp_dir().join(format!("tfe-kube-watch-{port}.yaml"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\n\
         users:\n- name: t\n  user: {{token: t}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t}}\n\
         current-context: t\n"
    );
    std::fs::write(&path, text).unwrap();
    let settings = KubeSettings {
        kubeconfig: Some(path.clone()),
        node_name: "node-a".into(),
    };
    let client = connect(&settings).await.unwrap().unwrap();
    std::fs::remove_file(&path).unwrap();
    client
}

fn zone(zone: &str) -> Place {
    Place {
        zone: Some(zone.into()),
        region: Some("eu-west-1".into()),
    }
}

#[tokio::test]
async fn run_publishes_a_synced_index_of_the_cluster() {
    let client = client_for(api_server(small_cluster).await).await;
    let (publish, mut published) = watch::channel(Arc::new(KubeIndex::empty("node-a")));
    let health = Arc::new(KubeHealth::new());
    let task = tokio::spawn(run(client, "node-a".into(), publish, health.clone()));
    let waited = tokio::time::timeout(
        Duration::from_secs(20),
        published.wait_for(|index| index.synced()),
    )
    .await;
    let index = waited.expect("synced within 20 s").unwrap().clone();
    task.abort();

    assert!(index.generation() >= 1);
    assert_eq!(index.this_node(), &zone("eu-west-1a"));
    let pod = index.peer("10.1.2.3".parse::<IpAddr>().unwrap()).unwrap();
    assert_eq!(
        (
            pod.kind,
            pod.namespace,
            pod.name,
            pod.workload,
            pod.node,
            pod.place
        ),
        (
            PeerKind::Pod,
            "shop",
            "web-5d4f8-x2",
            "web",
            Some("node-b"),
            zone("eu-west-1b")
        )
    );
    assert_eq!(index.pod_by_uid("p1").map(|p| p.name), Some("web-5d4f8-x2"));
    let service = index.peer("10.96.0.10".parse::<IpAddr>().unwrap()).unwrap();
    assert_eq!((service.kind, service.name), (PeerKind::Service, "web"));
    let states: Vec<(WatchState, u64, u64)> = health
        .read()
        .iter()
        .map(|kind| (kind.state, kind.objects, kind.watch_errors))
        .collect();
    let synced = WatchState::Synced;
    assert_eq!(
        states,
        [
            (synced, 1, 0),
            (synced, 1, 0),
            (synced, 2, 0),
            (synced, 1, 0),
            (synced, 0, 0)
        ]
    );
}

#[tokio::test]
async fn forbidden_lists_mark_every_kind_failing_and_publish_nothing() {
    let client = client_for(api_server(forbid_all).await).await;
    let (publish, published) = watch::channel(Arc::new(KubeIndex::empty("node-a")));
    let health = Arc::new(KubeHealth::new());
    let task = tokio::spawn(run(client, "node-a".into(), publish, health.clone()));
    let all_failing = || {
        health
            .read()
            .iter()
            .all(|kind| kind.state == WatchState::Failing)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !all_failing() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    for kind in health.read() {
        assert_eq!(
            (kind.state, kind.objects, kind.last_sync_unix),
            (WatchState::Failing, 0, 0),
            "{kind:?}"
        );
        assert!(kind.watch_errors >= 1, "{kind:?}");
    }
    assert_eq!(published.borrow().generation(), 0);
}
