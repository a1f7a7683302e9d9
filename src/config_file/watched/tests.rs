use std::fs;
use std::os::unix::fs::symlink;

use super::*;
use crate::identity::networks::Networks;

type LabelsFile = WatchedFile<Networks>;
use crate::identity::networks::scratch::{one_network, Scratch};

fn names(file: &LabelsFile) -> Vec<String> {
    file.current().iter().map(|n| n.name.to_string()).collect()
}

#[test]
fn an_unchanged_file_is_not_read_again() {
    let scratch = Scratch::new("unchanged");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("10.0.0.0/8", "corp")).unwrap();
    let mut file = LabelsFile::open(&path).unwrap();
    let before = file.current();
    assert!(!file.reload_if_changed().unwrap());
    assert!(!file.reload_if_changed().unwrap());
    // The same Arc: nothing was parsed.
    assert!(Arc::ptr_eq(&before, &file.current()));
    assert_eq!(names(&file), ["corp"]);
}

#[test]
fn a_forced_reload_reads_an_unchanged_file() {
    let scratch = Scratch::new("forced");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("10.0.0.0/8", "corp")).unwrap();
    let mut file = LabelsFile::open(&path).unwrap();
    let before = file.current();
    assert!(file.reload().unwrap());
    assert!(!Arc::ptr_eq(&before, &file.current()));
    assert_eq!(names(&file), ["corp"]);
}

#[test]
fn a_file_changed_in_place_is_reloaded() {
    let scratch = Scratch::new("in-place");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("10.0.0.0/8", "corp")).unwrap();
    let mut file = LabelsFile::open(&path).unwrap();
    fs::write(&path, one_network("10.20.0.0/16", "vpc-payments")).unwrap();
    assert!(file.reload_if_changed().unwrap());
    assert_eq!(names(&file), ["vpc-payments"]);
    assert!(!file.reload_if_changed().unwrap());
}

#[test]
fn a_file_renamed_over_is_reloaded() {
    let scratch = Scratch::new("rename");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("10.0.0.0/8", "aaaa")).unwrap();
    let mut file = LabelsFile::open(&path).unwrap();
    // Same length and modification time: only the inode tells them apart.
    let replacement = scratch.join("labels.yaml.new");
    fs::write(&replacement, one_network("10.0.0.0/8", "bbbb")).unwrap();
    let modified = fs::metadata(&path).unwrap().modified().unwrap();
    fs::File::options()
        .write(true)
        .open(&replacement)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    fs::rename(&replacement, &path).unwrap();
    assert!(file.reload_if_changed().unwrap());
    assert_eq!(names(&file), ["bbbb"]);
}

#[test]
fn a_configmap_symlink_swap_is_reloaded() {
    // The layout the kubelet gives a ConfigMap volume:
    //   labels.yaml -> ..data/labels.yaml, ..data -> ..<timestamp>/
    let scratch = Scratch::new("configmap");
    fs::create_dir(scratch.join("..2024_01_01")).unwrap();
    fs::write(
        scratch.join("..2024_01_01/labels.yaml"),
        one_network("10.0.0.0/8", "first"),
    )
    .unwrap();
    symlink("..2024_01_01", scratch.join("..data")).unwrap();
    symlink("..data/labels.yaml", scratch.join("labels.yaml")).unwrap();
    let mut file = LabelsFile::open(&scratch.join("labels.yaml")).unwrap();
    assert_eq!(names(&file), ["first"]);

    // An update: a new directory, then ..data swapped by rename.
    fs::create_dir(scratch.join("..2024_01_02")).unwrap();
    fs::write(
        scratch.join("..2024_01_02/labels.yaml"),
        one_network("10.0.0.0/8", "second"),
    )
    .unwrap();
    symlink("..2024_01_02", scratch.join("..data_tmp")).unwrap();
    fs::rename(scratch.join("..data_tmp"), scratch.join("..data")).unwrap();
    fs::remove_dir_all(scratch.join("..2024_01_01")).unwrap();

    assert!(file.reload_if_changed().unwrap());
    assert_eq!(names(&file), ["second"]);
    assert!(!file.reload_if_changed().unwrap());
}

#[test]
fn a_bad_file_keeps_the_old_set_and_is_reported_once() {
    let scratch = Scratch::new("bad");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("10.0.0.0/8", "corp")).unwrap();
    let mut file = LabelsFile::open(&path).unwrap();
    let before = file.current();

    fs::write(&path, one_network("10.0.0.0/33", "corp")).unwrap();
    let error = file.reload_if_changed().unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:2: networks[0].cidr: \"10.0.0.0/33\" is not a CIDR",
            path.display()
        )
    );
    assert!(Arc::ptr_eq(&before, &file.current()));
    // The same bad file is not reported again on the next poll.
    assert!(!file.reload_if_changed().unwrap());

    fs::write(&path, one_network("10.20.0.0/16", "fixed")).unwrap();
    assert!(file.reload_if_changed().unwrap());
    assert_eq!(names(&file), ["fixed"]);
}

#[test]
fn a_deleted_file_keeps_the_old_set() {
    let scratch = Scratch::new("deleted");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("10.0.0.0/8", "corp")).unwrap();
    let mut file = LabelsFile::open(&path).unwrap();
    fs::remove_file(&path).unwrap();
    let error = file.reload_if_changed().unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            path.display()
        )
    );
    assert_eq!(names(&file), ["corp"]);
    assert!(!file.reload_if_changed().unwrap());

    fs::write(&path, one_network("10.0.0.0/8", "back")).unwrap();
    assert!(file.reload_if_changed().unwrap());
    assert_eq!(names(&file), ["back"]);
}

#[test]
fn opening_a_missing_or_bad_file_fails() {
    let scratch = Scratch::new("open");
    let missing = scratch.join("missing.yaml");
    assert_eq!(
        LabelsFile::open(&missing).err().unwrap().to_string(),
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let empty = scratch.join("empty.yaml");
    fs::write(&empty, "").unwrap();
    assert_eq!(
        LabelsFile::open(&empty).err().unwrap().to_string(),
        format!(
            "{}:1: the file is empty: expected a `networks:` list",
            empty.display()
        )
    );
}

#[test]
fn load_reads_a_file() {
    let scratch = Scratch::new("load");
    let path = scratch.join("labels.yaml");
    fs::write(&path, one_network("192.0.2.0/24", "test-net")).unwrap();
    let networks = Networks::load(&path).unwrap();
    assert_eq!(
        networks
            .find("192.0.2.9".parse().unwrap())
            .map(|n| &*n.name),
        Some("test-net")
    );
}
