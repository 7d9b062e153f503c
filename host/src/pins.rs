//! Pins: parts of the library kept offline, whatever the cache's limit says
//! (`musicfs pin`, `unpin`, `pins`).
//!
//! - **A pin is a path of the library** (`Artist/Album`, a track, `""` for
//!   all of it), not a list of files: a track added to a pinned folder later is
//!   pinned too. A pin whose path the tree no longer shows (the album was
//!   retagged) stays, pinning nothing, until unpinned or shown again.
//! - **Kept in the index** (the `pins` table) and, for the day the index is
//!   damaged and rebuilt, in `pins.json` beside it: the index is only a cache
//!   of what the origins hold, pins are the user's.
//! - **What is pinned on disk** is the set of chunks the manifests of pinned
//!   files name ([`keeper`] works it out after every change and hands it to the
//!   chunk store, which never evicts them and does not count them against
//!   `content_cache_gb`). Chunks fetched for a pin are stored as pinned as they
//!   arrive, so a pin larger than the cache's limit fills in without evicting
//!   its own first bytes.
//! - **Fetching** is [`keeper`]'s: one background task that brings every
//!   pinned file whole into the cache, through the same failover as a read,
//!   and again whenever the tree changes or an origin comes back.
//! - **Room.** A pin that would not fit on the cache's disk (what every pin
//!   still needs against what is free, less a [`margin`]) is refused up
//!   front, with the sizes (`control::pin_requests`); the keeper fetches no file that
//!   would leave less than the margin free (a track added to a pinned folder
//!   later), and names it in its report.
//!
//! `control::pin_requests` answers the control socket, `control::pin_client`
//! is the command line's side of it, and [`playlist`] reads the M3U lists that
//! `musicfs pin` takes.

pub mod keeper;
pub mod playlist;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use redb::ReadableTable;

use crate::store::{Store, PINS};

/// The pinned paths, with when each was pinned (seconds since the epoch).
pub struct Pins {
    store: Arc<Store>,
    backup: PathBuf,
    paths: RwLock<BTreeMap<String, u64>>,
    /// Held across a change and its saving: two changes at once could
    /// otherwise save in the other order, the older last.
    changing: Mutex<()>,
}

/// The free space pins must leave on the cache's disk of `disk_size` bytes:
/// 256 MiB, or a tenth of a smaller disk (the index and the rest of the
/// cache need room to write too).
pub fn margin(disk_size: u64) -> u64 {
    (256u64 << 20).min(disk_size / 10)
}

/// `path` in the form pins are kept in: relative, no `.`, empty parts or
/// slashes at either end.
pub fn normal(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// A normal `path` as people read it (`/` for the root).
pub fn shown(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// The pin of `pins` covering `path` (normal): looked up for `path` and each
/// folder above it, so a getxattr costs the path's depth, not the pin count.
fn covering_in<'p>(pins: &'p BTreeMap<String, u64>, path: &str) -> Option<&'p str> {
    let above = path.rmatch_indices('/').map(|(at, _)| &path[..at]);
    std::iter::once(path)
        .chain(above)
        .chain(std::iter::once(""))
        .find_map(|candidate| pins.get_key_value(candidate).map(|(pin, _)| pin.as_str()))
}

impl Pins {
    /// The pins kept in `store`, or, if it has none, in `cache_dir/pins.json`
    /// (an index rebuilt after damage starts empty).
    pub fn load(store: Arc<Store>, cache_dir: &Path) -> Pins {
        let backup = cache_dir.join("pins.json");
        let stored = store.read(|txn| {
            let table = match txn.open_table(PINS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
                Err(e) => return Err(e.into()),
            };
            let mut paths = BTreeMap::new();
            for row in table.iter()? {
                let (path, at) = row?;
                paths.insert(path.value().to_owned(), at.value());
            }
            Ok(paths)
        });
        let stored = stored.unwrap_or_else(|e| {
            tracing::warn!(
                "cannot read the pins from the index (reading {}): {e}",
                backup.display()
            );
            BTreeMap::new()
        });
        let pins = Pins {
            store,
            backup,
            paths: RwLock::new(stored),
            changing: Mutex::new(()),
        };
        if pins.list().is_empty() {
            let saved: Option<BTreeMap<String, u64>> = std::fs::read(&pins.backup)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            if let Some(saved) = saved.filter(|s| !s.is_empty()) {
                tracing::warn!(
                    pins = saved.len(),
                    "the index held no pins: restored from {}",
                    pins.backup.display()
                );
                let restored = pins.change(|paths| {
                    *paths = saved;
                    Ok(())
                });
                if let Err(e) = restored {
                    tracing::warn!("cannot keep the restored pins: {e}");
                }
            }
        }
        pins
    }

    /// Every pin, in path order, with when it was made.
    pub fn list(&self) -> Vec<(String, u64)> {
        self.read().iter().map(|(p, at)| (p.clone(), *at)).collect()
    }

    /// The pin covering `path` (normal), if any: itself or a folder above it.
    pub fn covering(&self, path: &str) -> Option<String> {
        covering_in(&self.read(), path).map(str::to_owned)
    }

    /// Pins `paths` (normal); those pinned already keep their time. Returns
    /// those that were not pinned before.
    pub fn add(&self, paths: &[String]) -> Result<Vec<String>, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.change(|pins| {
            Ok(paths
                .iter()
                .filter(|p| pins.insert((*p).clone(), now).is_none())
                .cloned()
                .collect())
        })
    }

    /// Unpins `paths` (normal). A path that is not a pin itself is an error
    /// that names the pin covering it, if one does; nothing is changed then.
    pub fn remove(&self, paths: &[String]) -> Result<(), String> {
        self.change(|pins| {
            for path in paths {
                if pins.contains_key(path) {
                    continue;
                }
                return Err(match covering_in(pins, path) {
                    Some(pin) => format!(
                        "{} is not pinned itself: it is pinned through {}; unpin that",
                        shown(path),
                        shown(pin)
                    ),
                    None => format!("{} is not pinned", shown(path)),
                });
            }
            for path in paths {
                pins.remove(path);
            }
            Ok(())
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, u64>> {
        self.paths.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `edit` to a copy of the pins, saves the copy, and only then
    /// makes it the pins: a change that cannot be saved is not made.
    fn change<T>(
        &self,
        edit: impl FnOnce(&mut BTreeMap<String, u64>) -> Result<T, String>,
    ) -> Result<T, String> {
        let _one_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self.read().clone();
        let out = edit(&mut next)?;
        self.save(&next)?;
        *self.paths.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(out)
    }

    /// Writes `pins` to the index and to the backup file.
    fn save(&self, pins: &BTreeMap<String, u64>) -> Result<(), String> {
        self.store
            .write(true, |txn| {
                let mut table = txn.open_table(PINS)?;
                table.retain(|_, _| false)?;
                for (path, at) in pins {
                    table.insert(path.as_str(), *at)?;
                }
                Ok(())
            })
            .map_err(|e| format!("cannot keep the pins in the index: {e}"))?;
        let json = serde_json::to_vec_pretty(pins).map_err(|e| e.to_string())?;
        let temporary = self.backup.with_extension("json.new");
        std::fs::write(&temporary, json)
            .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, &self.backup))
            .map_err(|e| format!("cannot write {}: {e}", self.backup.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_covers_itself_and_what_is_below_it_only() {
        let covers = |pin: &str, path: &str| {
            let pins = BTreeMap::from([(pin.to_owned(), 0)]);
            covering_in(&pins, path) == Some(pin)
        };
        assert!(covers("A/B", "A/B"));
        assert!(covers("A/B", "A/B/01 - x.flac"));
        assert!(!covers("A/B", "A/Bc/01.flac"));
        assert!(!covers("A/B", "A"));
        assert!(covers("", "anything/at/all"));
        assert_eq!(normal("/A//B/./"), "A/B");
        assert_eq!(normal("/"), "");
    }

    #[test]
    fn pins_persist_and_come_back_from_the_backup_when_the_index_lost_them() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        {
            let pins = Pins::load(open(), dir.path());
            assert_eq!(pins.add(&["A/B".into(), "C".into()]).unwrap(), ["A/B", "C"]);
            assert_eq!(pins.add(&["C".into()]).unwrap(), Vec::<String>::new());
        }
        let pins = Pins::load(open(), dir.path());
        let paths: Vec<String> = pins.list().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["A/B", "C"]);
        assert_eq!(pins.covering("A/B/1.flac").as_deref(), Some("A/B"));
        assert_eq!(pins.covering("A/x.flac"), None);

        // A rebuilt (empty) index: the backup brings them back.
        drop(pins);
        std::fs::remove_file(dir.path().join("index.redb")).unwrap();
        let pins = Pins::load(open(), dir.path());
        assert_eq!(pins.list().len(), 2);
    }

    #[test]
    fn unpinning_a_path_below_a_pin_names_the_pin_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let pins = Pins::load(store, dir.path());
        pins.add(&["A/B".into(), "C".into()]).unwrap();
        let err = pins.remove(&["C".into(), "A/B/1.flac".into()]).unwrap_err();
        assert!(err.contains("pinned through A/B"), "{err}");
        assert_eq!(pins.list().len(), 2, "nothing was unpinned");
        assert_eq!(pins.remove(&["X".into()]).unwrap_err(), "X is not pinned");
        pins.remove(&["C".into()]).unwrap();
        assert_eq!(pins.list().len(), 1);
    }
}
