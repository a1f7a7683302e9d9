use std::fs;
use std::path::PathBuf;

use super::*;

const ID: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904c2ed2a5c1b6e9a3b7d0f1e22";

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tfe-names-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn docker(id: &str) -> ContainerRef {
    ContainerRef {
        id: id.to_string(),
        runtime: Runtime::Docker,
    }
}

fn podman(id: &str) -> ContainerRef {
    ContainerRef {
        id: id.to_string(),
        runtime: Runtime::Podman,
    }
}

#[test]
fn docker_name_from_config_without_leading_slash() {
    let root = TempDir::new("docker");
    let dir = root.0.join("containers").join(ID);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("config.v2.json"),
        format!(r#"{{"ID":"{ID}","Name":"/web-frontend","State":{{"Running":true}}}}"#),
    )
    .unwrap();
    assert_eq!(container_name(&docker(ID), &root.0, &[]), "web-frontend");
}

#[test]
fn docker_name_falls_back_to_short_id() {
    let root = TempDir::new("docker-bad");
    // No config for this id at all.
    assert_eq!(container_name(&docker(ID), &root.0, &[]), "4b825dc642cb");
    // A config that is not JSON.
    let dir = root.0.join("containers").join(ID);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config.v2.json"), "{truncated").unwrap();
    assert_eq!(container_name(&docker(ID), &root.0, &[]), "4b825dc642cb");
}

#[test]
fn podman_name_from_containers_json_in_any_root() {
    let missing = TempDir::new("podman-missing");
    let root = TempDir::new("podman");
    let dir = root.0.join("overlay-containers");
    fs::create_dir_all(&dir).unwrap();
    let other = "a".repeat(64);
    fs::write(
        dir.join("containers.json"),
        format!(
            r#"[{{"id":"{other}","names":["other"],"image":"x","layer":"y"}},
                {{"id":"{ID}","names":["db-primary"],"image":"x","layer":"y","metadata":"{{}}"}}]"#
        ),
    )
    .unwrap();
    let roots = [missing.0.clone(), root.0.clone()];
    assert_eq!(
        container_name(&podman(ID), Path::new("/nonexistent"), &roots),
        "db-primary"
    );
    assert_eq!(
        container_name(&podman(&"b".repeat(64)), Path::new("/nonexistent"), &roots),
        "bbbbbbbbbbbb"
    );
}

#[test]
fn runtimes_without_names_use_the_short_id() {
    let containerd = ContainerRef {
        id: ID.to_string(),
        runtime: Runtime::Containerd,
    };
    assert_eq!(
        container_name(&containerd, Path::new("/nonexistent"), &[]),
        "4b825dc642cb"
    );
    assert_eq!(short_id("abc"), "abc");
}
