//! The test API server against the real kube-rs client (no root needed):
//! pages, watches through changes, compaction and a restart, metadata-only
//! watches, bookmarks, and the refusals.

mod support;

use std::fmt::Debug;
use std::future::Future;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, watcher, Event};
use kube::ResourceExt;
use support::kube_api::{
    client, next_event, node, owned_by, pod, replica_set, until_watching, within, KubeApi, WAIT,
};

fn run(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(test);
}

fn status_code<T: Debug>(result: kube::Result<T>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error status, got {other:?}"),
    }
}

#[test]
fn a_list_comes_in_pages_of_the_clients_limit() {
    let api = KubeApi::start();
    for (ns, name) in [
        ("b", "p3"),
        ("a", "p1"),
        ("b", "p4"),
        ("a", "p2"),
        ("b", "p5"),
    ] {
        api.apply(&pod(ns, name, "", "10.0.0.1", "node-a", "Running"));
    }
    run(async {
        let pods: Api<Pod> = Api::all(client(&api).await);
        let mut names = Vec::new();
        let mut versions = Vec::new();
        let mut params = ListParams::default().limit(2);
        let mut pages = 0;
        loop {
            let page = pods.list(&params).await.expect("a page");
            pages += 1;
            assert_eq!(page.metadata.resource_version.as_deref(), Some("5"));
            for pod in &page.items {
                names.push(format!("{}/{}", pod.namespace().unwrap(), pod.name_any()));
                versions.push(pod.resource_version().unwrap());
            }
            match page.metadata.continue_ {
                Some(token) => params = ListParams::default().limit(2).continue_token(&token),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(names, ["a/p1", "a/p2", "b/p3", "b/p4", "b/p5"]);
        assert_eq!(versions, ["2", "4", "1", "3", "5"]);

        let in_b: Api<Pod> = Api::namespaced(client(&api).await, "b");
        let listed = in_b.list(&ListParams::default()).await.expect("a list");
        let names: Vec<String> = listed.items.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["p3", "p4", "p5"]);

        // A continue token from before a compaction is expired, as on etcd.
        let first = pods.list(&ListParams::default().limit(2)).await.unwrap();
        api.compact();
        let token = first.metadata.continue_.expect("a continue token");
        let rest = ListParams::default().limit(2).continue_token(&token);
        assert_eq!(status_code(pods.list(&rest).await), 410);
    });
    let lists = api.requests().into_iter().filter(|r| r.contains("limit=2"));
    assert_eq!(lists.filter(|r| r.ends_with(" 200")).count(), 4);
}

#[test]
fn a_watcher_follows_changes_compaction_and_a_restart() {
    let api = KubeApi::start();
    api.apply(&pod(
        "default", "a", "uid-a", "10.0.0.1", "node-a", "Running",
    ));
    api.apply(&pod(
        "default", "b", "uid-b", "10.0.0.2", "node-a", "Running",
    ));
    run(async {
        let pods: Api<Pod> = Api::all(client(&api).await);
        let mut events = watcher(pods, watcher::Config::default().page_size(1)).boxed();
        for expected in [
            "Init",
            "InitApply(default/a)",
            "InitApply(default/b)",
            "InitDone",
        ] {
            assert_eq!(next_event(&mut events, expected).await, expected);
        }
        api.apply(&pod(
            "default", "c", "uid-c", "10.0.0.3", "node-a", "Pending",
        ));
        assert_eq!(next_event(&mut events, "c added").await, "Apply(default/c)");
        api.delete::<Pod>(Some("default"), "a");
        assert_eq!(
            next_event(&mut events, "a deleted").await,
            "Delete(default/a)"
        );

        api.compact();
        let expired = next_event(&mut events, "the 410").await;
        assert!(expired.contains("too old resource version"), "{expired}");
        for expected in [
            "Init",
            "InitApply(default/b)",
            "InitApply(default/c)",
            "InitDone",
        ] {
            assert_eq!(next_event(&mut events, expected).await, expected);
        }
        until_watching(&api, &mut events, "the watch after the relist").await;

        api.go_down();
        let refused = next_event(&mut events, "a refused watch").await;
        let refused = match refused.starts_with("error: watch stream failed") {
            true => next_event(&mut events, "a refused watch").await,
            false => refused,
        };
        assert!(
            refused.starts_with("error: failed to start watching"),
            "{refused}"
        );
        let before_d = api.resource_version();
        api.apply(&pod(
            "default", "d", "uid-d", "10.0.0.4", "node-a", "Running",
        ));
        api.come_back();
        // Resumed from where it was, not relisted: d comes as a change.
        assert_eq!(
            next_event(&mut events, "d after the restart").await,
            "Apply(default/d)"
        );

        // The one-call restart: the stream drops, the watcher comes back.
        api.restart();
        api.apply(&pod(
            "default", "e", "uid-e", "10.0.0.5", "node-a", "Running",
        ));
        let mut seen = next_event(&mut events, "e after restart()").await;
        for _ in 0..5 {
            if !seen.starts_with("error: ") {
                break;
            }
            seen = next_event(&mut events, "e after restart()").await;
        }
        assert_eq!(seen, "Apply(default/e)");
        let resumed = format!("resourceVersion={before_d}");
        let watches = api
            .requests()
            .into_iter()
            .filter(|r| r.contains("watch=true"));
        assert!(
            watches.clone().any(|r| r.contains(&resumed)),
            "a watch from {before_d}: {:?}",
            watches.collect::<Vec<_>>()
        );
    });
    assert_eq!(api.metadata_only_requests(), Vec::<String>::new());
}

#[test]
fn a_metadata_watcher_gets_partial_objects_with_owners() {
    let api = KubeApi::start();
    api.apply(&replica_set("shop", "web-7d9", "uid-rs-1", "web"));
    run(async {
        // kube 5's form of metadata_watcher: an Api over PartialObjectMeta
        // sends the metadata-only Accept header.
        let sets: Api<PartialObjectMeta<ReplicaSet>> = Api::all(client(&api).await);
        let mut events = watcher(sets, watcher::Config::default()).boxed();
        assert!(matches!(
            within("Init", events.next()).await,
            Some(Ok(Event::Init))
        ));
        let Some(Ok(Event::InitApply(set))) = within("the ReplicaSet", events.next()).await else {
            panic!("expected the ReplicaSet web-7d9 first");
        };
        assert_eq!(set.types.as_ref().unwrap().kind, "PartialObjectMetadata");
        assert_eq!(set.metadata.name.as_deref(), Some("web-7d9"));
        assert_eq!(set.metadata.uid.as_deref(), Some("uid-rs-1"));
        let owners = set.metadata.owner_references.unwrap();
        let owner = (owners[0].kind.as_str(), owners[0].name.as_str());
        assert_eq!((owners.len(), owner), (1, ("Deployment", "web")));
        assert_eq!(next_event(&mut events, "InitDone").await, "InitDone");

        let mut bare = replica_set("shop", "bare", "uid-rs-2", "");
        bare = owned_by(bare, "Deployment", "api", "uid-dep-api");
        api.apply(&bare);
        let Some(Ok(Event::Apply(set))) = within("the second set", events.next()).await else {
            panic!("expected the ReplicaSet bare as an Apply");
        };
        assert_eq!(set.metadata.uid.as_deref(), Some("uid-rs-2"));
        assert_eq!(set.metadata.owner_references.unwrap()[0].uid, "uid-dep-api");
    });
    // Both the list and the watch asked for metadata only.
    assert_eq!(api.metadata_only_requests(), api.requests());
    assert_eq!(api.requests().len(), 2, "{:?}", api.requests());
}

#[test]
fn bookmarks_arrive_every_second_and_the_watch_ends_at_its_timeout() {
    let api = KubeApi::start();
    api.apply(&node("node-a", "192.0.2.1", "zone-a", "region-1"));
    run(async {
        let nodes: Api<Node> = Api::all(client(&api).await);
        let params = WatchParams::default().timeout(2);
        let mut stream = nodes.watch(&params, "0").await.expect("a watch").boxed();
        let Some(Ok(WatchEvent::Added(node))) = within("node-a", stream.next()).await else {
            panic!("expected node-a as ADDED first");
        };
        assert_eq!(node.labels()["topology.kubernetes.io/zone"], "zone-a");
        let Some(Ok(WatchEvent::Bookmark(mark))) = within("a bookmark", stream.next()).await else {
            panic!("expected a BOOKMARK next");
        };
        assert_eq!(mark.metadata.resource_version, "1");
        assert_eq!(mark.types.kind, "Node");
        let rest: Vec<_> = within("the end at 2 s", stream.collect::<Vec<_>>()).await;
        assert!(rest.len() <= 2, "only bookmarks until the end: {rest:?}");
    });
    let watch = api
        .requests()
        .into_iter()
        .find(|r| r.contains("watch=true"));
    let watch = watch.expect("the watch is logged");
    assert!(watch.contains("allowWatchBookmarks=true"), "{watch}");
}

#[test]
fn a_watch_from_a_compacted_version_gets_the_410_error_event() {
    let api = KubeApi::start();
    api.apply(&pod("default", "a", "", "10.0.0.1", "node-a", "Running"));
    api.compact();
    run(async {
        let pods: Api<Pod> = Api::all(client(&api).await);
        let mut stream = pods
            .watch(&WatchParams::default(), "1")
            .await
            .unwrap()
            .boxed();
        let Some(Ok(WatchEvent::Error(status))) = within("ERROR", stream.next()).await else {
            panic!("expected an ERROR event first");
        };
        assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        assert!(within("the end", stream.next()).await.is_none());
    });
}

#[test]
fn forbidden_and_unknown_resources_get_status_errors() {
    let api = KubeApi::start();
    api.forbid("/api/v1/nodes", true);
    run(async {
        let client = client(&api).await;
        let nodes: Api<Node> = Api::all(client.clone());
        assert_eq!(status_code(nodes.list(&ListParams::default()).await), 403);
        let maps: Api<ConfigMap> = Api::all(client);
        assert_eq!(status_code(maps.list(&ListParams::default()).await), 404);
        api.forbid("/api/v1/nodes", false);
        assert!(nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty());
    });
    let codes: Vec<String> = api
        .requests()
        .iter()
        .map(|r| r[r.len() - 3..].into())
        .collect();
    assert_eq!(codes, ["403", "404", "200"]);
}

#[test]
fn dropping_the_server_ends_an_open_watch() {
    let api = KubeApi::start();
    run(async move {
        let pods: Api<Pod> = Api::all(client(&api).await);
        let mut stream = pods
            .watch(&WatchParams::default(), "0")
            .await
            .unwrap()
            .boxed();
        assert!(api.wait_for_watchers(1, WAIT), "the watch is open");
        drop(api);
        while within("the watch to end", stream.next()).await.is_some() {}
    });
}
