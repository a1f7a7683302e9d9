//! A container's name, from the runtime's own state on disk.
//!
//! Read once, when a container's cgroup is first seen; the name of a
//! container never changes while its cgroup lives (`docker rename` makes a
//! new name for the same id, and the old series keep the old one, which is
//! what "labels never change" wants anyway). When the state is not
//! readable (another data root, rootless Podman under a home directory,
//! containerd and CRI-O, which have no names of their own) the name is the
//! 12-hex short id that `docker ps` and `podman ps` print.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::classify::{ContainerRef, Runtime};

#[cfg(test)]
mod tests;

/// The container's name, or its short id.
pub(super) fn container_name(
    container: &ContainerRef,
    docker_root: &Path,
    podman_roots: &[PathBuf],
) -> String {
    let name = match container.runtime {
        Runtime::Docker => docker_name(docker_root, &container.id),
        Runtime::Podman => podman_roots
            .iter()
            .find_map(|root| podman_name(root, &container.id)),
        Runtime::Containerd | Runtime::CriO | Runtime::Unknown => None,
    };
    name.unwrap_or_else(|| short_id(&container.id).to_string())
}

pub(super) fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(rename = "Name")]
    name: String,
}

/// `<docker_root>/containers/<id>/config.v2.json`, field `Name`, which
/// Docker stores with a leading `/` (a legacy of container links).
fn docker_name(docker_root: &Path, id: &str) -> Option<String> {
    let path = docker_root
        .join("containers")
        .join(id)
        .join("config.v2.json");
    let text = fs::read(&path).ok()?;
    let config: DockerConfig = serde_json::from_slice(&text).ok()?;
    let name = config.name.trim_start_matches('/');
    (!name.is_empty()).then(|| name.to_string())
}

#[derive(Deserialize)]
struct PodmanContainer {
    id: String,
    #[serde(default)]
    names: Vec<String>,
}

/// containers/storage keeps every container of one storage driver in
/// `<root>/<driver>-containers/containers.json` (`overlay-containers` on
/// nearly every host, `vfs-containers` or `btrfs-containers` elsewhere).
fn podman_name(storage_root: &Path, id: &str) -> Option<String> {
    let entries = fs::read_dir(storage_root).ok()?;
    entries.flatten().find_map(|entry| {
        let dir = entry.file_name();
        if !dir.to_string_lossy().ends_with("-containers") {
            return None;
        }
        let text = fs::read(entry.path().join("containers.json")).ok()?;
        let containers: Vec<PodmanContainer> = serde_json::from_slice(&text).ok()?;
        containers
            .into_iter()
            .find(|c| c.id == id)?
            .names
            .into_iter()
            .find(|name| !name.is_empty())
    })
}
