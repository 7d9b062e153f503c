//! Paged listing of big folders without reading them again for every page.
//!
//! The first page reads and sorts the folder's names once and keeps them as a
//! snapshot; the cursor names the snapshot, the position in it and the last name
//! returned. Later pages slice the snapshot and stat only their own entries. When a
//! snapshot has been evicted, the folder is read again and the listing resumes after
//! the last name, so a slow reader still gets every entry once.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use origin_api::{OriginError, OriginResult};

/// How many folder snapshots stay in memory.
const KEEP: usize = 16;

/// One name in a folder, with whether the folder's own listing says it is a
/// folder (readdir's d_type: known even when the entry cannot be stat'ed, as a
/// dead network mount cannot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Name {
    pub(crate) text: String,
    pub(crate) is_dir: bool,
}

/// The sorted names of one folder at one moment.
struct Snapshot {
    id: u64,
    dir: String,
    names: Arc<Vec<Name>>,
}

#[derive(Default)]
pub(crate) struct Snapshots {
    next_id: AtomicU64,
    kept: Mutex<VecDeque<Snapshot>>,
}

impl Snapshots {
    /// The snapshot `id` of folder `dir`, if still kept.
    pub(crate) fn get(&self, id: u64, dir: &str) -> Option<Arc<Vec<Name>>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .find(|s| s.id == id && s.dir == dir)
            .map(|s| s.names.clone())
    }

    /// Keeps the sorted names of folder `dir`, evicting the oldest snapshot.
    pub(crate) fn insert(&self, dir: &str, names: Vec<Name>) -> (u64, Arc<Vec<Name>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let names = Arc::new(names);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEEP {
            kept.pop_front();
        }
        kept.push_back(Snapshot {
            id,
            dir: dir.to_owned(),
            names: names.clone(),
        });
        (id, names)
    }
}

/// `snapshot:index:last name` (the name may itself contain `:`).
pub(crate) struct Cursor {
    pub(crate) snapshot: u64,
    pub(crate) index: usize,
    pub(crate) last_name: String,
}

impl Cursor {
    pub(crate) fn parse(text: &str) -> OriginResult<Cursor> {
        let mut parts = text.splitn(3, ':');
        let parsed = (|| {
            let snapshot = parts.next()?.parse().ok()?;
            let index = parts.next()?.parse().ok()?;
            let last_name = parts.next()?.to_owned();
            Some(Cursor {
                snapshot,
                index,
                last_name,
            })
        })();
        parsed.ok_or_else(|| OriginError::other(format!("invalid listing cursor {text:?}")))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.snapshot, self.index, self.last_name)
    }
}
