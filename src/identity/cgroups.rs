//! The local end of a flow: which workload owns the socket, from the
//! socket's cgroup id that the kernel puts in the flow key.
//!
//! The id is taken in the kernel, not guessed from the local IP, so it
//! tells apart hostNetwork pods and several services on one host. User
//! space turns it into a path below the cgroup2 mount (`lookup`), reads
//! the path's names ([`classify()`]: a pod's uid, a container, a systemd
//! unit) and, for Docker and Podman, the container's name (`names`).
//! Answers are cached per id: a scrape meets each new flow's id once, and
//! a cached id costs one hash lookup.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod classify;
mod lookup;
mod names;
#[cfg(test)]
mod tests;

pub use classify::{classify, Classified, ContainerRef, Runtime};
pub use lookup::{find_cgroup2_mount, LookupMethod};

/// How many ids are remembered at most. A node runs a few thousand
/// cgroups; past this bound new ids are still answered, only not cached,
/// until [`Cgroups::prune`] makes room.
const MAX_CACHED: usize = 65_536;

/// Who runs in one cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LocalWorkload {
    /// The pod's uid (with dashes, as the API shows it) when the cgroup is
    /// a Kubernetes pod's or one of its containers'. A static pod's is the
    /// 32-hex hash of its manifest.
    pub pod_uid: Option<Arc<str>>,
    /// The container id when the cgroup is a container's (any runtime),
    /// for logs and tests.
    pub container_id: Option<Arc<str>>,
    /// systemd unit or container name (Docker's or Podman's, else the
    /// 12-hex short id); "" when nothing better than the root cgroup, and
    /// for a pod's own cgroup, whose names come from Kubernetes.
    pub workload: Arc<str>,
}

/// Where to read cgroups and container names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupSettings {
    /// The cgroup2 mount; in a DaemonSet, a mount of the host's.
    pub cgroup_root: PathBuf,
    /// Docker's data root, for `containers/<id>/config.v2.json`.
    pub docker_root: PathBuf,
    /// containers/storage roots (rootful Podman's, then its run root).
    pub podman_roots: Vec<PathBuf>,
}

impl Default for CgroupSettings {
    fn default() -> Self {
        CgroupSettings {
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            docker_root: PathBuf::from("/var/lib/docker"),
            podman_roots: vec![
                PathBuf::from("/var/lib/containers/storage"),
                PathBuf::from("/run/containers/storage"),
            ],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot open the cgroup root {}: {error}", root.display())]
    Root { root: PathBuf, error: io::Error },
    #[error(
        "{} is not a cgroup2 mount (filesystem magic {magic:#x}, want 0x63677270){}",
        root.display(),
        match hint {
            Some(found) => format!("; this system mounts cgroup2 at {}", found.display()),
            None => String::from("; no cgroup2 mount found, so socket attribution needs a cgroup2 host"),
        }
    )]
    NotCgroup2 {
        root: PathBuf,
        magic: i64,
        hint: Option<PathBuf>,
    },
}

/// Counts for self-metrics.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CgroupStats {
    /// Ids whose answer is cached.
    pub cached: usize,
    /// Lookups of a non-zero id that found no cgroup (gone before it was
    /// seen, or newer than the last allowed walk).
    pub not_found: u64,
    /// Walks of the whole tree so far (0 while handles work).
    pub walks: u64,
    pub method: LookupMethod,
}

/// foldhash: ids are the kernel's, not an attacker's choice, and a scrape
/// looks up one per new flow.
type IdMap<V> = HashMap<u64, V, foldhash::fast::RandomState>;
type IdSet = HashSet<u64, foldhash::fast::RandomState>;

struct Entry {
    path: PathBuf,
    workload: Arc<LocalWorkload>,
}

/// Cgroup ids to local workloads, cached.
pub struct Cgroups {
    settings: CgroupSettings,
    lookup: lookup::Lookup,
    cache: IdMap<Entry>,
    /// Ids whose cgroup was removed: the kernel never hands an id out twice.
    gone: IdSet,
    empty: Arc<LocalWorkload>,
    not_found: u64,
}

impl Cgroups {
    /// Fails with one line naming the path if `cgroup_root` cannot be
    /// opened or is not a cgroup2 mount.
    pub fn new(settings: CgroupSettings) -> Result<Cgroups, CgroupError> {
        Ok(Cgroups {
            lookup: lookup::Lookup::open(&settings.cgroup_root)?,
            settings,
            cache: IdMap::default(),
            gone: IdSet::default(),
            empty: Arc::new(LocalWorkload::default()),
            not_found: 0,
        })
    }

    /// The workload in cgroup `id`; the empty one for id 0 (attribution
    /// off, or a socket the kernel could not attribute), the root cgroup,
    /// and ids whose cgroup is not found.
    pub fn resolve(&mut self, id: u64) -> Arc<LocalWorkload> {
        if let Some(entry) = self.cache.get(&id) {
            return entry.workload.clone();
        }
        match self.look_up_new(id) {
            Some((_, workload)) => workload,
            None => self.empty.clone(),
        }
    }

    /// The cgroup's path relative to the cgroup root, such as
    /// `system.slice/nginx.service`; empty for the root cgroup.
    pub fn path_of(&mut self, id: u64) -> Option<PathBuf> {
        if let Some(entry) = self.cache.get(&id) {
            return Some(entry.path.clone());
        }
        self.look_up_new(id).map(|(path, _)| path)
    }

    /// Forgets the ids whose cgroup no longer exists, and the ids known to
    /// be gone, so memory follows the live cgroups. About once a minute.
    pub fn prune(&mut self) {
        let lookup = &self.lookup;
        self.cache
            .retain(|&id, entry| lookup.still_exists(id, &entry.path));
        self.gone = IdSet::default();
        self.lookup.forget_walk();
    }

    pub fn stats(&self) -> CgroupStats {
        CgroupStats {
            cached: self.cache.len(),
            not_found: self.not_found,
            walks: self.lookup.walks,
            method: self.lookup.method,
        }
    }

    /// An id not in the cache: finds its cgroup and caches the answer
    /// (unless the cache is full); `None` when no cgroup was found.
    fn look_up_new(&mut self, id: u64) -> Option<(PathBuf, Arc<LocalWorkload>)> {
        if id == 0 {
            return None;
        }
        if self.gone.contains(&id) {
            self.not_found += 1;
            return None;
        }
        let path = match self.lookup.find(id) {
            lookup::Found::Path(path) => path,
            lookup::Found::Gone => {
                if self.gone.len() < MAX_CACHED {
                    self.gone.insert(id);
                }
                self.not_found += 1;
                return None;
            }
            lookup::Found::NotNow => {
                self.not_found += 1;
                return None;
            }
        };
        let workload = self.workload_at(&path);
        if self.cache.len() < MAX_CACHED {
            let entry = Entry {
                path: path.clone(),
                workload: workload.clone(),
            };
            self.cache.insert(id, entry);
        }
        Some((path, workload))
    }

    fn workload_at(&self, path: &Path) -> Arc<LocalWorkload> {
        let found = classify(&path.to_string_lossy());
        let workload = match (&found.container, &found.pod_uid, found.unit) {
            (Some(container), _, _) => names::container_name(
                container,
                &self.settings.docker_root,
                &self.settings.podman_roots,
            ),
            (None, Some(_), _) | (None, None, None) => String::new(),
            (None, None, Some(unit)) => unit,
        };
        Arc::new(LocalWorkload {
            pod_uid: found.pod_uid.map(Arc::from),
            container_id: found.container.map(|c| Arc::from(c.id)),
            workload: Arc::from(workload),
        })
    }
}

impl std::fmt::Debug for Cgroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroups")
            .field("root", &self.lookup.root())
            .field("stats", &self.stats())
            .finish()
    }
}
