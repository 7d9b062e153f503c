//! Whole copies: a file version whose every byte is cached, written out once as
//! one plain file under `cache_dir/whole/`, so that the kernel can read it by
//! itself (FUSE passthrough, see `fs::passthrough`) at the speed of a local file.
//!
//! - **Made** from the chunk store, each chunk verified against its BLAKE3 name
//!   as it is read, into a `.part` file that is synced and then renamed: a copy
//!   under its final name is whole and was verified once, when it was made.
//! - **Not verified again.** The kernel reads a copy without the daemon seeing
//!   the bytes; damage to it after it was made is not caught (SEMANTICS.md).
//!   A copy whose length is not its version's size is removed when met.
//! - **Named** by the BLAKE3 hash of the version's key (origin, path, size,
//!   mtime, version), so a new version of a file never gets an old one's copy.
//! - **Counted** in the cache's size. Copies can be made again from chunks, so
//!   they go first: least recently opened first, whenever chunks and copies
//!   together pass the limit, and none is made that would not fit, in the
//!   limit or on the disk (where it leaves as much again free, and 64 MiB).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::manifest::FileVersion;

/// What is known of one copy on disk.
struct Copy {
    len: u64,
    last_use: u64,
}

#[derive(Default)]
struct Copies {
    by_name: HashMap<String, Copy>,
    /// Copies being made, by name.
    making: HashSet<String>,
    total: u64,
    clock: u64,
}

/// The whole copies under one folder.
pub struct WholeCopies {
    dir: PathBuf,
    copies: Mutex<Copies>,
}

/// The right to make one copy, from [`WholeCopies::start`]: the copy is written
/// through it and counted once [`Making::finish`] renames it into place.
pub struct Making<'a> {
    copies: &'a WholeCopies,
    name: String,
    part: PathBuf,
    file: BufWriter<File>,
    written: u64,
}

/// Bytes a copy is written in at once. The page cache holds a file in folios
/// as large as the writes that made it: in the mount bench, a copy written
/// chunk by chunk (64 KiB) read back at 0.52x of the raw file, one written
/// 4 MiB at a time at 1.2x.
const WRITE_SIZE: usize = 4 << 20;

impl WholeCopies {
    /// The copies in `dir` (made if missing); `.part` files left by a crash
    /// are removed.
    pub fn open(dir: &Path) -> std::io::Result<WholeCopies> {
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.ends_with(".part") {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let meta = entry.metadata()?;
            found.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                name,
                meta.len(),
            ));
        }
        // The order they were last opened in survives a restart as their mtimes.
        found.sort();
        let mut copies = Copies::default();
        for (_, name, len) in found {
            copies.clock += 1;
            copies.total += len;
            let last_use = copies.clock;
            copies.by_name.insert(name, Copy { len, last_use });
        }
        Ok(WholeCopies {
            dir: dir.to_owned(),
            copies: Mutex::new(copies),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Copies> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn name_of(version: &FileVersion) -> String {
        blake3::hash(version.key().as_bytes()).to_hex().to_string()
    }

    /// Bytes held in copies.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    /// Whether `version` has a copy of the right length (one of another
    /// length is removed).
    pub fn has(&self, version: &FileVersion) -> bool {
        let name = Self::name_of(version);
        if !self.lock().by_name.contains_key(&name) {
            return false;
        }
        let path = self.dir.join(&name);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == version.size) {
            return true;
        }
        self.remove_damaged(&name, version);
        false
    }

    fn remove_damaged(&self, name: &str, version: &FileVersion) {
        tracing::warn!(path = %version.path, "a whole copy was damaged or gone; removing it");
        let mut copies = self.lock();
        if let Some(copy) = copies.by_name.remove(name) {
            copies.total -= copy.len;
        }
        drop(copies);
        let _ = std::fs::remove_file(self.dir.join(name));
    }

    /// `version`'s copy, opened for reading, if it has one of the right size.
    pub fn open_copy(&self, version: &FileVersion) -> Option<File> {
        let name = Self::name_of(version);
        if !self.lock().by_name.contains_key(&name) {
            return None;
        }
        let path = self.dir.join(&name);
        let file = File::open(&path)
            .ok()
            .filter(|f| f.metadata().is_ok_and(|m| m.len() == version.size));
        let mut copies = self.lock();
        match file {
            Some(file) => {
                copies.clock += 1;
                let clock = copies.clock;
                if let Some(copy) = copies.by_name.get_mut(&name) {
                    copy.last_use = clock;
                }
                drop(copies);
                // Remembered across restarts (see `open`); a failure costs only order.
                let _ = file.set_modified(SystemTime::now());
                Some(file)
            }
            None => {
                drop(copies);
                self.remove_damaged(&name, version);
                None
            }
        }
    }

    /// Whether the disk can take a copy of `len` bytes (see
    /// [`crate::paths::room_to_spare`]).
    pub fn room_for(&self, len: u64) -> bool {
        crate::paths::room_to_spare(&self.dir, len)
    }

    /// Claims the making of `version`'s copy: `None` if it has one, or one is
    /// being made.
    pub fn start(&self, version: &FileVersion) -> std::io::Result<Option<Making<'_>>> {
        let name = Self::name_of(version);
        {
            let mut copies = self.lock();
            if copies.by_name.contains_key(&name) || !copies.making.insert(name.clone()) {
                return Ok(None);
            }
        }
        let part = self.dir.join(format!("{name}.part"));
        match File::create(&part) {
            Ok(file) => Ok(Some(Making {
                copies: self,
                name,
                part,
                file: BufWriter::with_capacity(WRITE_SIZE, file),
                written: 0,
            })),
            Err(e) => {
                self.lock().making.remove(&name);
                Err(e)
            }
        }
    }

    /// Removes copies, least recently opened first, until at most `budget`
    /// bytes are left in them.
    pub fn trim(&self, budget: u64) {
        loop {
            let victim = {
                let mut copies = self.lock();
                if copies.total <= budget {
                    return;
                }
                let Some(name) = copies
                    .by_name
                    .iter()
                    .min_by_key(|(_, c)| c.last_use)
                    .map(|(n, _)| n.clone())
                else {
                    return;
                };
                let copy = copies.by_name.remove(&name).expect("just found");
                copies.total -= copy.len;
                name
            };
            if let Err(e) = std::fs::remove_file(self.dir.join(&victim)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("cannot remove a whole copy: {e}");
                }
            }
        }
    }
}

impl Making<'_> {
    /// Appends the next bytes of the file.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Syncs the copy and puts it in place, if it has `size` bytes.
    pub fn finish(mut self, size: u64) -> std::io::Result<()> {
        if self.written != size {
            return Err(std::io::Error::other(format!(
                "a whole copy came to {} bytes, not {size}",
                self.written
            )));
        }
        // Synced before the rename: after a crash, a copy under its final name
        // is whole, never a file of the right length with blocks never written.
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        std::fs::rename(&self.part, self.copies.dir.join(&self.name))?;
        let mut copies = self.copies.lock();
        copies.clock += 1;
        let last_use = copies.clock;
        copies.total += size;
        copies.by_name.insert(
            self.name.clone(),
            Copy {
                len: size,
                last_use,
            },
        );
        Ok(())
    }
}

impl Drop for Making<'_> {
    fn drop(&mut self) {
        let mut copies = self.copies.lock();
        copies.making.remove(&self.name);
        if !copies.by_name.contains_key(&self.name) {
            drop(copies);
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(path: &str, size: u64) -> FileVersion {
        FileVersion {
            origin: "o".into(),
            path: path.into(),
            size,
            mtime_ns: 1,
            version: None,
        }
    }

    fn make(copies: &WholeCopies, v: &FileVersion) {
        let mut making = copies.start(v).unwrap().unwrap();
        making.write(&vec![1u8; v.size as usize]).unwrap();
        making.finish(v.size).unwrap();
    }

    #[test]
    fn a_copy_is_there_once_finished_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let copies = WholeCopies::open(dir.path()).unwrap();
        let v = version("a.flac", 10);
        let mut making = copies.start(&v).unwrap().unwrap();
        assert!(copies.start(&v).unwrap().is_none(), "one maker at a time");
        making.write(&[1; 4]).unwrap();
        assert!(copies.open_copy(&v).is_none(), "not before it is finished");
        making.write(&[2; 6]).unwrap();
        making.finish(10).unwrap();
        assert_eq!(copies.open_copy(&v).unwrap().metadata().unwrap().len(), 10);
        assert!(copies.start(&v).unwrap().is_none(), "made already");
        drop(copies);
        let again = WholeCopies::open(dir.path()).unwrap();
        assert!(again.has(&v));
        assert_eq!(again.total_bytes(), 10);
        let other = FileVersion {
            mtime_ns: 2,
            ..v.clone()
        };
        assert!(
            again.open_copy(&other).is_none(),
            "a new version is not the old copy"
        );
    }

    #[test]
    fn a_short_or_abandoned_copy_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let copies = WholeCopies::open(dir.path()).unwrap();
        let v = version("a.flac", 10);
        let mut making = copies.start(&v).unwrap().unwrap();
        making.write(&[1; 4]).unwrap();
        assert!(making.finish(10).is_err());
        drop(copies.start(&v).unwrap().unwrap());
        assert!(!copies.has(&v));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_damaged_copy_is_removed_when_met() {
        let dir = tempfile::tempdir().unwrap();
        let copies = WholeCopies::open(dir.path()).unwrap();
        let v = version("a.flac", 10);
        make(&copies, &v);
        let path = dir.path().join(WholeCopies::name_of(&v));
        std::fs::write(&path, b"short").unwrap();
        assert!(copies.open_copy(&v).is_none());
        assert!(!path.exists());
        assert_eq!(copies.total_bytes(), 0);
    }

    #[test]
    fn trimming_removes_the_least_recently_opened_first() {
        let dir = tempfile::tempdir().unwrap();
        let copies = WholeCopies::open(dir.path()).unwrap();
        let (a, b, c) = (version("a", 10), version("b", 10), version("c", 10));
        make(&copies, &a);
        make(&copies, &b);
        make(&copies, &c);
        copies.open_copy(&a).unwrap();
        copies.trim(20);
        assert!(copies.has(&a) && copies.has(&c) && !copies.has(&b));
        copies.trim(0);
        assert_eq!(copies.total_bytes(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
