use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const ROOT_ONLY: &str = "needs root to create cgroups: scripts/test.sh runs it";
const UID: &str = "1f0c3a2e-5b6d-4c1e-9a7b-0123456789ab";
const UID_UNDERSCORES: &str = "1f0c3a2e_5b6d_4c1e_9a7b_0123456789ab";
const CRI_ID: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904c2ed2a5c1b6e9a3b7d0f1e22";
const DOCKER_ID: &str = "d2c3a1b0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2";

/// Real cgroups under the cgroup2 mount, removed (deepest first) on drop,
/// so a failed assertion leaves nothing behind.
struct TestTree {
    mount: PathBuf,
    created: Vec<PathBuf>,
}

impl TestTree {
    fn new() -> TestTree {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("this test {ROOT_ONLY}; run it as root (sudo -E cargo test -- --ignored)");
        }
        let mount = find_cgroup2_mount().expect("no cgroup2 mount in /proc/self/mountinfo");
        TestTree {
            mount,
            created: Vec::new(),
        }
    }

    /// Makes every missing directory of `relative` and returns its id.
    fn make(&mut self, relative: &str) -> u64 {
        let mut path = self.mount.clone();
        for component in relative.split('/') {
            path.push(component);
            if !path.exists() {
                fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
                self.created.push(path.clone());
            }
        }
        fs::metadata(&path).unwrap().ino()
    }

    fn remove(&mut self, relative: &str) {
        let path = self.mount.join(relative);
        fs::remove_dir(&path).unwrap_or_else(|e| panic!("rmdir {}: {e}", path.display()));
        self.created.retain(|p| p != &path);
    }

    fn settings(&self, docker_root: &Path) -> CgroupSettings {
        CgroupSettings {
            cgroup_root: self.mount.clone(),
            docker_root: docker_root.to_path_buf(),
            podman_roots: vec![],
        }
    }
}

impl Drop for TestTree {
    fn drop(&mut self) {
        for path in self.created.iter().rev() {
            let _ = fs::remove_dir(path);
        }
    }
}

/// A fake Docker data root with one container named "web-frontend".
struct FakeDocker(PathBuf);

impl FakeDocker {
    fn new(tag: &str) -> FakeDocker {
        let root = std::env::temp_dir().join(format!("tfe-docker-{tag}-{}", std::process::id()));
        let dir = root.join("containers").join(DOCKER_ID);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("config.v2.json"),
            format!(r#"{{"ID":"{DOCKER_ID}","Name":"/web-frontend"}}"#),
        )
        .unwrap();
        FakeDocker(root)
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn workload(pod_uid: Option<&str>, container_id: Option<&str>, name: &str) -> LocalWorkload {
    LocalWorkload {
        pod_uid: pod_uid.map(Arc::from),
        container_id: container_id.map(Arc::from),
        workload: Arc::from(name),
    }
}

fn resolves_real_cgroups(method: LookupMethod) {
    let mut tree = TestTree::new();
    let docker = FakeDocker::new(&format!("{method:?}"));
    let base = format!("tfe-test-{}-{method:?}", std::process::id());
    let nginx = format!("{base}/system.slice/nginx.service");
    let sandbox = format!("{base}/kubepods.slice/kubepods-pod{UID_UNDERSCORES}.slice");
    let cri = format!("{sandbox}/cri-containerd-{CRI_ID}.scope");
    let docker_scope = format!("{base}/system.slice/docker-{DOCKER_ID}.scope");
    let expected = [
        (
            tree.make(&nginx),
            &nginx,
            workload(None, None, "nginx.service"),
        ),
        (
            tree.make(&cri),
            &cri,
            workload(Some(UID), Some(CRI_ID), "4b825dc642cb"),
        ),
        (tree.make(&sandbox), &sandbox, workload(Some(UID), None, "")),
        (
            tree.make(&docker_scope),
            &docker_scope,
            workload(None, Some(DOCKER_ID), "web-frontend"),
        ),
    ];
    let root_id = fs::metadata(&tree.mount).unwrap().ino();

    let mut cgroups = Cgroups::new(tree.settings(&docker.0)).expect("open the cgroup2 mount");
    // As root with CAP_DAC_READ_SEARCH the handle path must work; the walk
    // is forced to test the fallback.
    assert_eq!(cgroups.stats().method, LookupMethod::Handle);
    if method == LookupMethod::Walk {
        cgroups.lookup.force_walk();
    }
    for (id, path, want) in &expected {
        assert_eq!(*cgroups.resolve(*id), *want, "{path}");
        assert_eq!(cgroups.path_of(*id), Some(PathBuf::from(path)), "{path}");
    }
    assert_eq!(*cgroups.resolve(root_id), LocalWorkload::default());
    assert_eq!(cgroups.path_of(root_id), Some(PathBuf::new()));
    assert_eq!(*cgroups.resolve(0), LocalWorkload::default());
    assert_eq!(cgroups.path_of(0), None);
    let stats = cgroups.stats();
    assert_eq!(
        stats.cached,
        expected.len() + 1,
        "four cgroups and the root"
    );
    assert_eq!(stats.not_found, 0);
    assert_eq!(stats.method, method);
    // One walk maps every cgroup; handles never walk.
    let walks = if method == LookupMethod::Walk { 1 } else { 0 };
    assert_eq!(stats.walks, walks);
    // A second resolve is the cached answer, the very same allocation.
    let (id, _, _) = &expected[0];
    assert!(Arc::ptr_eq(&cgroups.resolve(*id), &cgroups.resolve(*id)));
}

#[test]
#[ignore = "needs root to create cgroups: scripts/test.sh runs it"]
fn resolves_real_cgroups_by_handle_as_root() {
    resolves_real_cgroups(LookupMethod::Handle);
}

#[test]
#[ignore = "needs root to create cgroups: scripts/test.sh runs it"]
fn resolves_real_cgroups_by_walk_as_root() {
    resolves_real_cgroups(LookupMethod::Walk);
}

#[test]
#[ignore = "needs root to create cgroups: scripts/test.sh runs it"]
fn removed_cgroups_are_not_found_and_pruned_as_root() {
    let mut tree = TestTree::new();
    let base = format!("tfe-test-{}-prune", std::process::id());
    let keep = format!("{base}/keep.service");
    let remove = format!("{base}/remove.service");
    let (keep_id, remove_id) = (tree.make(&keep), tree.make(&remove));
    let mut cgroups = Cgroups::new(tree.settings(Path::new("/nonexistent"))).unwrap();
    assert_eq!(
        cgroups.resolve(remove_id).workload.as_ref(),
        "remove.service"
    );
    assert_eq!(cgroups.resolve(keep_id).workload.as_ref(), "keep.service");
    tree.remove(&remove);
    cgroups.prune();
    assert_eq!(cgroups.stats().cached, 1);
    assert_eq!(cgroups.path_of(remove_id), None);
    assert_eq!(*cgroups.resolve(remove_id), LocalWorkload::default());
    assert_eq!(
        cgroups.stats().not_found,
        2,
        "path_of and resolve both missed"
    );
    assert_eq!(cgroups.path_of(keep_id), Some(PathBuf::from(&keep)));
}

#[test]
#[ignore = "needs root to create cgroups: scripts/test.sh runs it"]
fn walks_at_most_once_a_second_as_root() {
    let mut tree = TestTree::new();
    let base = format!("tfe-test-{}-ratelimit", std::process::id());
    tree.make(&base);
    let mut cgroups = Cgroups::new(tree.settings(Path::new("/nonexistent"))).unwrap();
    cgroups.lookup.force_walk();
    // An id no cgroup has: the first miss walks, the next ones do not.
    let unknown = u64::MAX - 7;
    for _ in 0..3 {
        assert_eq!(*cgroups.resolve(unknown), LocalWorkload::default());
    }
    assert_eq!((cgroups.stats().walks, cgroups.stats().not_found), (1, 3));
    // A cgroup newer than the walk waits for the next allowed walk.
    let late = format!("{base}/late.service");
    let late_id = tree.make(&late);
    assert_eq!(*cgroups.resolve(late_id), LocalWorkload::default());
    assert_eq!(cgroups.stats().walks, 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(cgroups.resolve(late_id).workload.as_ref(), "late.service");
    assert_eq!(cgroups.stats().walks, 2);
}

#[test]
fn a_directory_that_is_not_cgroup2_is_refused_in_one_line() {
    let dir = std::env::temp_dir();
    let settings = CgroupSettings {
        cgroup_root: dir.clone(),
        ..CgroupSettings::default()
    };
    let error = Cgroups::new(settings).unwrap_err().to_string();
    let canonical = fs::canonicalize(&dir).unwrap();
    let prefix = format!(
        "{} is not a cgroup2 mount (filesystem magic 0x",
        canonical.display()
    );
    assert!(error.starts_with(&prefix), "{error}");
    assert!(!error.contains('\n'), "{error}");
}

#[test]
fn a_missing_root_names_the_path() {
    let settings = CgroupSettings {
        cgroup_root: PathBuf::from("/nonexistent/cgroup"),
        ..CgroupSettings::default()
    };
    let error = Cgroups::new(settings).unwrap_err().to_string();
    assert_eq!(
        error,
        "cannot open the cgroup root /nonexistent/cgroup: No such file or directory (os error 2)"
    );
}

/// Drops CAP_DAC_READ_SEARCH from the calling thread's effective set only
/// (capabilities are per thread), as in an exporter run without it.
fn drop_dac_read_search_on_this_thread() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Copy, Clone, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_DAC_READ_SEARCH: u32 = 2; // include/uapi/linux/capability.h
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: version 3 takes a header and two data structs, both valid here.
    let got = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(got, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !(1 << CAP_DAC_READ_SEARCH);
    // SAFETY: as above; pid 0 is the calling thread.
    let set = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(set, 0, "capset: {}", std::io::Error::last_os_error());
}

#[test]
#[ignore = "needs root to create cgroups: scripts/test.sh runs it"]
fn without_cap_dac_read_search_handles_give_way_to_the_walk_as_root() {
    let mut tree = TestTree::new();
    let nginx = format!(
        "tfe-test-{}-nocap/system.slice/nginx.service",
        std::process::id()
    );
    let id = tree.make(&nginx);
    let settings = tree.settings(Path::new("/nonexistent"));
    let (method, resolved) = std::thread::spawn(move || {
        drop_dac_read_search_on_this_thread();
        let mut cgroups = Cgroups::new(settings).expect("open the cgroup2 mount");
        let method = cgroups.stats().method;
        (method, cgroups.resolve(id))
    })
    .join()
    .expect("the thread without CAP_DAC_READ_SEARCH");
    assert_eq!(
        method,
        LookupMethod::Walk,
        "open_by_handle_at must be refused (EPERM)"
    );
    assert_eq!(*resolved, workload(None, None, "nginx.service"));
}
