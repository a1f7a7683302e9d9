use std::fs;
use std::time::Duration;

use super::*;
use crate::config_file::WatchedFile;
use crate::identity::networks::scratch::{one_network, replace, Scratch};
use crate::identity::networks::Networks;

const QUICK: Duration = Duration::from_millis(10);
const PATIENCE: Duration = Duration::from_secs(10);

fn names(networks: &Networks) -> Vec<String> {
    networks.iter().map(|n| n.name.to_string()).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until `done` holds, polling.
async fn until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !done() {
            tokio::time::sleep(QUICK).await;
        }
    })
    .await
    .expect("waited too long");
}

#[tokio::test]
async fn a_changed_file_is_published() {
    let scratch = Scratch::new("publish");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("10.0.0.0/8", "corp")).unwrap();
    let file = WatchedFile::<Networks>::open(&path).unwrap();
    let (publish, mut current) = watch::channel(file.current());
    let stats = Arc::new(FileStats::new());
    let before = unix_now();
    tokio::spawn(keep_loaded_with(
        file,
        publish,
        Arc::clone(&stats),
        None,
        QUICK,
    ));
    until(|| stats.entries_loaded() == 1).await;
    assert_eq!(stats.reloads_succeeded(), 0);

    replace(
        &path,
        "networks:\n  - cidr: 10.20.0.0/16\n    name: vpc\n  - cidr: 192.0.2.0/24\n    name: test-net\n",
    );
    tokio::time::timeout(PATIENCE, current.changed())
        .await
        .expect("waited too long")
        .unwrap();
    assert_eq!(names(&current.borrow_and_update()), ["vpc", "test-net"]);
    assert_eq!(stats.reloads_succeeded(), 1);
    assert_eq!(stats.reloads_failed(), 0);
    assert_eq!(stats.entries_loaded(), 2);
    let loaded = stats.last_load_unix_seconds();
    assert!(
        (before..=unix_now()).contains(&loaded),
        "loaded at {loaded}"
    );
}

#[tokio::test]
async fn a_bad_file_is_counted_once_and_not_published() {
    let scratch = Scratch::new("bad");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("10.0.0.0/8", "corp")).unwrap();
    let file = WatchedFile::<Networks>::open(&path).unwrap();
    let (publish, mut current) = watch::channel(file.current());
    let stats = Arc::new(FileStats::new());
    tokio::spawn(keep_loaded_with(
        file,
        publish,
        Arc::clone(&stats),
        None,
        QUICK,
    ));

    // Replaced whole: a write in place could be seen half done (empty,
    // then bad), which is two failures.
    replace(&path, "networks:\n  - name: no-cidr\n");
    until(|| stats.reloads_failed() == 1).await;
    // Many more polls of the same bad file: no new failure, nothing sent.
    tokio::time::sleep(QUICK * 20).await;
    assert_eq!(stats.reloads_failed(), 1);
    assert_eq!(stats.reloads_succeeded(), 0);
    assert!(!current.has_changed().unwrap());
    assert_eq!(names(&current.borrow_and_update()), ["corp"]);
    assert_eq!(stats.entries_loaded(), 1);
}

#[tokio::test]
async fn sighup_reloads_without_waiting_for_a_poll() {
    // Handle SIGHUP in this process before anything sends it, so a stray
    // one can never end the test binary.
    let _also_handled_here = signal(SignalKind::hangup()).unwrap();
    let hangups = signal(SignalKind::hangup()).unwrap();
    let scratch = Scratch::new("sighup");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("10.0.0.0/8", "corp")).unwrap();
    let file = WatchedFile::<Networks>::open(&path).unwrap();
    let (publish, mut current) = watch::channel(file.current());
    let stats = Arc::new(FileStats::new());
    // The first poll happens at once; the next one in an hour.
    tokio::spawn(keep_loaded_with(
        file,
        publish,
        Arc::clone(&stats),
        Some(hangups),
        Duration::from_secs(3600),
    ));
    until(|| stats.entries_loaded() == 1).await;
    tokio::time::sleep(QUICK).await;

    fs::write(&path, one_network("10.20.0.0/16", "after-hangup")).unwrap();
    // SAFETY: kill() with this process's own id and a signal it handles.
    let sent = unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    assert_eq!(sent, 0);
    tokio::time::timeout(PATIENCE, current.changed())
        .await
        .expect("waited too long")
        .unwrap();
    assert_eq!(names(&current.borrow_and_update()), ["after-hangup"]);
    assert_eq!(stats.reloads_succeeded(), 1);
}

#[tokio::test]
async fn the_task_ends_when_nobody_listens() {
    let scratch = Scratch::new("closed");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("10.0.0.0/8", "corp")).unwrap();
    let file = WatchedFile::<Networks>::open(&path).unwrap();
    let (publish, current) = watch::channel(file.current());
    let task = tokio::spawn(keep_loaded_with(
        file,
        publish,
        Arc::new(FileStats::new()),
        None,
        QUICK,
    ));
    drop(current);
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the task kept running")
        .unwrap();
}
