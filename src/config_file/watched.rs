//! A configuration file on disk, and noticing when it changes.
//!
//! A Kubernetes ConfigMap volume never edits a file in place. It writes a
//! new timestamped directory and swaps the `..data` symlink to it, and the
//! mounted file is itself a symlink through `..data`. So a change
//! is seen by following the symlinks and comparing what the path resolves
//! to now (device, inode, size, modification and change times) with what
//! was read last. Editors that save by rename are caught the same way.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::{ConfigError, Loadable};

#[cfg(test)]
mod tests;

/// A configuration file, what was last loaded from it, and what it looked
/// like.
pub struct WatchedFile<T> {
    path: PathBuf,
    loaded: Arc<T>,
    loaded_at: SystemTime,
    /// What the path resolved to when last read, whether that read loaded
    /// or failed: a bad file is reported once, not on every poll.
    seen: Seen,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Seen {
    File(Stamp),
    Unreadable(std::io::ErrorKind),
}

/// Enough of a file's metadata to tell that it changed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Stamp {
        Stamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

impl<T: Loadable> WatchedFile<T> {
    /// Loads the file at `path`; an error here is a start-up error.
    pub fn open(path: &Path) -> Result<WatchedFile<T>, ConfigError> {
        let (loaded, stamp) = read::<T>(path, None).map_err(|(error, _)| error)?;
        Ok(WatchedFile {
            path: path.to_path_buf(),
            loaded: Arc::new(loaded),
            loaded_at: SystemTime::now(),
            seen: Seen::File(stamp),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was last loaded successfully.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.loaded)
    }

    /// When the current contents were loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// Reads the file again whether or not it changed (SIGHUP). Ok(true)
    /// when new contents were loaded; on error the old ones stay current.
    pub fn reload(&mut self) -> Result<bool, ConfigError> {
        match read::<T>(&self.path, Some(&self.loaded)) {
            Ok((loaded, stamp)) => {
                self.loaded = Arc::new(loaded);
                self.loaded_at = SystemTime::now();
                self.seen = Seen::File(stamp);
                Ok(true)
            }
            Err((error, seen)) => {
                self.seen = seen;
                Err(error)
            }
        }
    }

    /// Reads the file again if what its path resolves to changed since the
    /// last read. Ok(false) when unchanged: nothing is read or parsed.
    pub fn reload_if_changed(&mut self) -> Result<bool, ConfigError> {
        let now = match std::fs::metadata(&self.path) {
            Ok(metadata) => Seen::File(Stamp::of(&metadata)),
            Err(error) => Seen::Unreadable(error.kind()),
        };
        if now == self.seen {
            return Ok(false);
        }
        self.reload()
    }
}

/// Reads and parses `path`, with the stamp of the very file read (taken
/// from the open file, so a swap between looking and reading is noticed on
/// the next poll); `before` is what is in force, for reloads. On error,
/// also what was seen.
fn read<T: Loadable>(path: &Path, before: Option<&T>) -> Result<(T, Stamp), (ConfigError, Seen)> {
    let origin = path.display().to_string();
    let unreadable = |source: std::io::Error| {
        let seen = Seen::Unreadable(source.kind());
        let error = ConfigError::Read {
            origin: origin.clone(),
            source,
        };
        (error, seen)
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let stamp = Stamp::of(&file.metadata().map_err(unreadable)?);
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(unreadable)?;
    match T::parse(&text, &origin, before) {
        Ok(loaded) => Ok((loaded, stamp)),
        Err(error) => Err((error, Seen::File(stamp))),
    }
}
