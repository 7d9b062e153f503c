//! The open files, by handle: a slot each, so finding a read's session is an
//! index into a vector, not a lookup by key.
//!
//! Handles outlive the daemon that gave them: after a restart under the same
//! mount (`mount::keeper`) the kernel still reads with the old ones. So each
//! daemon numbers from where no earlier one can have reached (see
//! [`first_handle`]), and a handle it does not know gets a session of its own
//! at its first read ([`OpenFiles::adopt`]), kept until it is released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use super::session::Session;

/// Every open file's session.
pub struct OpenFiles {
    /// The first handle.
    base: u64,
    /// Handle `base + i` is slot `i`.
    slots: RwLock<Vec<Option<Arc<Session>>>>,
    /// Slots released, to be given again.
    free: Mutex<Vec<usize>>,
    /// Sessions of handles an earlier daemon gave.
    adopted: Mutex<HashMap<u64, Arc<Session>>>,
}

impl Default for OpenFiles {
    fn default() -> Self {
        OpenFiles::starting_at(first_handle())
    }
}

impl OpenFiles {
    /// Handles from `base` on.
    pub fn starting_at(base: u64) -> Self {
        OpenFiles {
            base,
            slots: RwLock::default(),
            free: Mutex::default(),
            adopted: Mutex::default(),
        }
    }

    /// Opens `session`; returns its handle.
    pub fn insert(&self, session: Arc<Session>) -> u64 {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let slot = match free {
            Some(slot) => {
                slots[slot] = Some(session);
                slot
            }
            None => {
                slots.push(Some(session));
                slots.len() - 1
            }
        };
        self.base + slot as u64
    }

    fn slot(&self, fh: u64) -> Option<usize> {
        fh.checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
    }

    /// The session of `fh`, if this daemon opened it or adopted it.
    pub fn get(&self, fh: u64) -> Option<Arc<Session>> {
        if let Some(slot) = self.slot(fh) {
            let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
            if let Some(Some(session)) = slots.get(slot) {
                return Some(session.clone());
            }
        }
        self.adopted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .cloned()
    }

    /// The session of `fh`, made by `make` if no one has it (a handle an
    /// earlier daemon gave); `None` if `make` finds no file.
    pub fn adopt(&self, fh: u64, make: impl FnOnce() -> Option<Session>) -> Option<Arc<Session>> {
        if let Some(session) = self.get(fh) {
            return Some(session);
        }
        let session = Arc::new(make()?);
        Some(
            self.adopted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(fh)
                .or_insert(session)
                .clone(),
        )
    }

    /// Closes `fh`; returns its session.
    pub fn remove(&self, fh: u64) -> Option<Arc<Session>> {
        if let Some(slot) = self.slot(fh) {
            let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
            if let Some(taken) = slots.get_mut(slot).and_then(Option::take) {
                self.free
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(slot);
                return Some(taken);
            }
        }
        self.adopted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh)
    }
}

/// The first file handle of this daemon: the time in microseconds, times
/// 2^20. An earlier daemon reached this only by having more than 2^20 files
/// open at once or by starting within the same microsecond; the numbers wrap
/// after about twelve days (2^40 µs).
fn first_handle() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    ((micros & ((1 << 40) - 1)) << 20).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::content_cache::ContentCache;
    use crate::store::Store;
    use crate::values::Replica;

    #[test]
    fn handles_index_their_sessions_and_others_are_adopted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let cache = Arc::new(ContentCache::open(dir.path(), u64::MAX, store).unwrap());
        let replica = |path: &str| Replica {
            origin: "o".into(),
            path: path.into(),
            size: 10,
            mtime_ns: 1,
            version: None,
        };
        let session = |path: &str| Arc::new(Session::open(&cache, &[replica(path)]));
        let open = OpenFiles::starting_at(1 << 20);
        let (a, b) = (open.insert(session("a")), open.insert(session("b")));
        assert_eq!((a, b), ((1 << 20), (1 << 20) + 1));
        assert_eq!(open.get(b).unwrap().replicas()[0].path, "b");
        assert_eq!(open.remove(a).unwrap().replicas()[0].path, "a");
        assert!(open.get(a).is_none() && open.remove(a).is_none());
        assert_eq!(
            open.insert(session("c")),
            a,
            "a released slot is given again"
        );

        // A handle of an earlier daemon: one session, made at its first read.
        let earlier = 5;
        let mut made = 0;
        for _ in 0..2 {
            let adopted = open.adopt(earlier, || {
                made += 1;
                Some(Session::open(&cache, &[replica("old")]))
            });
            assert_eq!(adopted.unwrap().replicas()[0].path, "old");
        }
        assert_eq!(made, 1);
        assert!(open.remove(earlier).is_some());
        assert!(open.adopt(6, || None).is_none(), "no such file");
    }
}
