use super::*;

const UID: &str = "1f0c3a2e-5b6d-4c1e-9a7b-0123456789ab";
const UID_UNDERSCORES: &str = "1f0c3a2e_5b6d_4c1e_9a7b_0123456789ab";
const ID: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904c2ed2a5c1b6e9a3b7d0f1e22";
const ID2: &str = "d2c3a1b0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2";

fn pod(uid: &str, id: Option<&str>, runtime: Runtime) -> Classified {
    Classified {
        pod_uid: Some(uid.to_string()),
        container: id.map(|id| ContainerRef {
            id: id.to_string(),
            runtime,
        }),
        unit: None,
    }
}

fn container(id: &str, runtime: Runtime) -> Classified {
    Classified {
        pod_uid: None,
        container: Some(ContainerRef {
            id: id.to_string(),
            runtime,
        }),
        unit: None,
    }
}

fn unit(name: &str) -> Classified {
    Classified {
        pod_uid: None,
        container: None,
        unit: Some(name.to_string()),
    }
}

#[test]
fn kubelet_systemd_driver_burstable_containerd() {
    let path = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_UNDERSCORES}.slice/cri-containerd-{ID}.scope"
    );
    assert_eq!(classify(&path), pod(UID, Some(ID), Runtime::Containerd));
}

#[test]
fn kubelet_systemd_driver_besteffort_crio_and_its_conmon() {
    let base = format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_UNDERSCORES}.slice"
    );
    assert_eq!(
        classify(&format!("{base}/crio-{ID}.scope")),
        pod(UID, Some(ID), Runtime::CriO)
    );
    assert_eq!(
        classify(&format!("{base}/crio-conmon-{ID}.scope")),
        pod(UID, Some(ID), Runtime::CriO)
    );
}

#[test]
fn kubelet_systemd_driver_guaranteed_docker() {
    let path = format!("kubepods.slice/kubepods-pod{UID_UNDERSCORES}.slice/docker-{ID}.scope");
    assert_eq!(classify(&path), pod(UID, Some(ID), Runtime::Docker));
}

#[test]
fn pod_cgroup_itself_has_the_uid_and_no_container() {
    let path = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_UNDERSCORES}.slice"
    );
    assert_eq!(classify(&path), pod(UID, None, Runtime::Unknown));
}

#[test]
fn kubelet_cgroupfs_driver() {
    assert_eq!(
        classify(&format!("kubepods/burstable/pod{UID}/{ID}")),
        pod(UID, Some(ID), Runtime::Unknown)
    );
    assert_eq!(
        classify(&format!("kubepods/pod{UID}/{ID}")),
        pod(UID, Some(ID), Runtime::Unknown)
    );
    assert_eq!(
        classify(&format!("kubepods/besteffort/pod{UID}/crio-{ID}")),
        pod(UID, Some(ID), Runtime::CriO)
    );
    assert_eq!(
        classify(&format!("kubepods/besteffort/pod{UID}")),
        pod(UID, None, Runtime::Unknown)
    );
}

#[test]
fn static_pod_hash_is_its_uid() {
    let hash = "7e5b6d0f1c6c3a1a3d3ad1b8f0f6c2e1";
    let path = format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice/cri-containerd-{ID}.scope");
    assert_eq!(classify(&path), pod(hash, Some(ID), Runtime::Containerd));
}

#[test]
fn kind_node_nested_in_docker_with_kubelet_cgroup_root() {
    // A kind node is a Docker container; its kubelet uses --cgroup-root=/kubelet.
    let path = format!(
        "system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_UNDERSCORES}.slice/cri-containerd-{ID}.scope"
    );
    assert_eq!(classify(&path), pod(UID, Some(ID), Runtime::Containerd));
    // The node's own services are the node container's, not this host's.
    let node_service = format!("system.slice/docker-{ID2}.scope/system.slice/containerd.service");
    assert_eq!(classify(&node_service), container(ID2, Runtime::Docker));
}

#[test]
fn k3s_cgroupfs_under_a_prefix() {
    let path = format!("k3s/kubepods/burstable/pod{UID}/{ID}");
    assert_eq!(classify(&path), pod(UID, Some(ID), Runtime::Unknown));
}

#[test]
fn docker_without_kubernetes() {
    assert_eq!(
        classify(&format!("system.slice/docker-{ID}.scope")),
        container(ID, Runtime::Docker)
    );
    assert_eq!(
        classify(&format!("docker/{ID}")),
        container(ID, Runtime::Docker)
    );
}

#[test]
fn podman_rootful_rootless_and_cgroupfs() {
    assert_eq!(
        classify(&format!("machine.slice/libpod-{ID}.scope")),
        container(ID, Runtime::Podman)
    );
    // With --systemd or a private cgroup namespace Podman moves the
    // payload one level down, into "container".
    assert_eq!(
        classify(&format!("machine.slice/libpod-{ID}.scope/container")),
        container(ID, Runtime::Podman)
    );
    assert_eq!(
        classify(&format!(
            "user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
        )),
        container(ID, Runtime::Podman)
    );
    assert_eq!(
        classify(&format!("libpod_parent/libpod-{ID}")),
        container(ID, Runtime::Podman)
    );
    assert_eq!(
        classify(&format!("machine.slice/libpod-conmon-{ID}.scope")),
        container(ID, Runtime::Podman)
    );
}

#[test]
fn containerd_outside_kubernetes() {
    assert_eq!(
        classify(&format!("system.slice/nerdctl-{ID}.scope")),
        container(ID, Runtime::Containerd)
    );
    // containerd's cgroupfs layout is <namespace>/<id>.
    assert_eq!(
        classify(&format!("default/{ID}")),
        container(ID, Runtime::Unknown)
    );
}

#[test]
fn uppercase_ids_are_lowered() {
    let upper = ID.to_ascii_uppercase();
    assert_eq!(
        classify(&format!("system.slice/docker-{upper}.scope")),
        container(ID, Runtime::Docker)
    );
}

#[test]
fn systemd_services() {
    assert_eq!(
        classify("system.slice/nginx.service"),
        unit("nginx.service")
    );
    assert_eq!(
        classify("system.slice/system-getty.slice/getty@tty1.service"),
        unit("getty@tty1.service")
    );
    // A delegated service's own sub-cgroups are still that service.
    assert_eq!(
        classify("system.slice/containerd.service/workers"),
        unit("containerd.service")
    );
}

#[test]
fn user_sessions_managers_and_scopes() {
    assert_eq!(
        classify("user.slice/user-1000.slice/session-3.scope"),
        unit("user-1000.slice")
    );
    assert_eq!(
        classify("user.slice/user-1000.slice/user@1000.service/init.scope"),
        unit("user@1000.service")
    );
    assert_eq!(
        classify("user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-4242.scope"),
        unit("user@1000.service")
    );
    assert_eq!(
        classify("user.slice/user-1000.slice/user@1000.service/session.slice/pipewire.service"),
        unit("pipewire.service")
    );
    assert_eq!(classify("init.scope"), unit("init.scope"));
    assert_eq!(
        classify(r"machine.slice/machine-qemu\x2d1\x2dvm1.scope"),
        unit(r"machine-qemu\x2d1\x2dvm1.scope")
    );
}

#[test]
fn root_and_unknown_managers() {
    assert_eq!(classify(""), Classified::default());
    assert_eq!(classify("/"), Classified::default());
    assert_eq!(classify("batch/job-7"), unit("job-7"));
}

#[test]
fn look_alikes_are_not_pods_or_containers() {
    // "pod" without a kubepods parent, a non-uuid after "-pod", a short
    // bare hex directory, a prefix with a non-hex id.
    assert_eq!(classify(&format!("pod{UID}/x")), unit("x"));
    assert_eq!(
        classify("kubepods.slice/kubepods-podcast.slice"),
        unit("kubepods-podcast.slice")
    );
    assert_eq!(classify("deadbeef"), unit("deadbeef"));
    assert_eq!(
        classify("system.slice/docker-compose.service"),
        unit("docker-compose.service")
    );
    assert_eq!(
        classify("system.slice/crio-wipe.service"),
        unit("crio-wipe.service")
    );
}
