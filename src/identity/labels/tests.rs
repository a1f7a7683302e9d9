use super::*;

fn local(workload: &str) -> Local {
    Local {
        namespace: "shop".into(),
        pod: "web-1".into(),
        workload: workload.into(),
    }
}

#[test]
fn text_follows_the_flow_labels_in_order_escaped_and_without_empty_values() {
    let peer = Peer {
        kind: PeerKind::Network,
        namespace: empty(),
        name: "vpc \"payments\"\\a\nb".into(),
        workload: empty(),
    };
    let identity = Identity::new(local("web"), peer, Path::CrossZone);
    assert_eq!(
        identity.text(),
        r#",src_namespace="shop",src_pod="web-1",src_workload="web",dst_kind="network",dst_name="vpc \"payments\"\\a\nb",path="cross_zone""#
    );
}

#[test]
fn equal_identities_share_one_pointer_until_nobody_holds_them() {
    let mut interner = Interner::default();
    let make = |w: &str| Identity::new(local(w), Peer::of_kind(PeerKind::Internet), Path::Internet);
    let a = interner.intern(make("web"));
    let b = interner.intern(make("web"));
    let c = interner.intern(make("api"));
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(interner.len(), 2);
    drop(c);
    interner.prune();
    assert_eq!(interner.len(), 1);
    drop((a, b));
    interner.prune();
    assert!(interner.is_empty());
}
