//! Paged listing of big folders without reading them again for every page, for
//! backends whose folder listing cannot resume at a cursor of its own (a local
//! folder, an SFTP `readdir`).
//!
//! The first page reads and sorts the folder's entries once and keeps them as a
//! [`Snapshots`] entry; the [`Cursor`] names the snapshot, the position in it and
//! the last name returned. Later pages slice the snapshot. When a snapshot has
//! been evicted, the folder is read again and the listing resumes after the last
//! name, so a slow reader still gets every entry once.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::{DirEntry, OriginError, OriginResult};

/// How many folder snapshots stay in memory.
const KEEP: usize = 16;

/// An entry of a snapshot: something with a name to sort and resume by.
pub trait Named {
    /// Its name in the folder.
    fn name(&self) -> &str;
}

impl Named for DirEntry {
    fn name(&self) -> &str {
        &self.name
    }
}

/// The sorted entries of one folder at one moment.
struct Snapshot<T> {
    id: u64,
    dir: String,
    entries: Arc<Vec<T>>,
}

/// The last few folders listed, each as its sorted entries.
pub struct Snapshots<T> {
    next_id: AtomicU64,
    kept: Mutex<VecDeque<Snapshot<T>>>,
}

impl<T> Default for Snapshots<T> {
    fn default() -> Self {
        Snapshots {
            next_id: AtomicU64::new(0),
            kept: Mutex::new(VecDeque::new()),
        }
    }
}

/// Where a page starts: in a kept snapshot, or in a fresh one that must be
/// read first.
pub enum Resume<T> {
    /// The snapshot is kept: its entries and the index to go on from.
    Kept(u64, Arc<Vec<T>>, usize),
    /// Not kept (or the first page): read the folder and call
    /// [`Snapshots::fresh`].
    Read,
}

impl<T: Named> Snapshots<T> {
    /// Where the page of `dir` after `cursor` starts.
    pub fn resume(&self, dir: &str, cursor: Option<&Cursor>) -> Resume<T> {
        let Some(cursor) = cursor else {
            return Resume::Read;
        };
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        match kept
            .iter()
            .find(|s| s.id == cursor.snapshot && s.dir == dir)
        {
            Some(s) => Resume::Kept(s.id, s.entries.clone(), cursor.index),
            None => Resume::Read,
        }
    }

    /// Keeps the freshly read `entries` of `dir` (sorted here), evicting the
    /// oldest snapshot; returns them with the index to start at, after the
    /// cursor's last name when resuming.
    pub fn fresh(
        &self,
        dir: &str,
        mut entries: Vec<T>,
        cursor: Option<&Cursor>,
    ) -> (u64, Arc<Vec<T>>, usize) {
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        let start = match cursor {
            Some(c) => entries.partition_point(|e| e.name() <= c.last_name.as_str()),
            None => 0,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entries = Arc::new(entries);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEEP {
            kept.pop_front();
        }
        kept.push_back(Snapshot {
            id,
            dir: dir.to_owned(),
            entries: entries.clone(),
        });
        (id, entries, start)
    }
}

/// `snapshot:index:last name` (the name may itself contain `:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The snapshot the page came from.
    pub snapshot: u64,
    /// The index of the next entry in it.
    pub index: usize,
    /// The name of the last entry returned.
    pub last_name: String,
}

impl Cursor {
    /// The cursor after a page of `entries` that ended before `index`, or
    /// `None` when the folder is done.
    pub fn after<T: Named>(snapshot: u64, entries: &[T], index: usize) -> Option<Cursor> {
        (index > 0 && index < entries.len()).then(|| Cursor {
            snapshot,
            index,
            last_name: entries[index - 1].name().to_owned(),
        })
    }

    /// Reads a cursor this module wrote.
    pub fn parse(text: &str) -> OriginResult<Cursor> {
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

#[cfg(test)]
mod tests {
    use super::*;

    impl Named for String {
        fn name(&self) -> &str {
            self
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_cursor_survives_its_text_form_with_colons_in_the_name() {
        let cursor = Cursor {
            snapshot: 7,
            index: 3,
            last_name: "a:b:c".into(),
        };
        assert_eq!(Cursor::parse(&cursor.to_string()).unwrap(), cursor);
        assert!(Cursor::parse("x:1:a").is_err());
    }

    #[test]
    fn an_evicted_snapshot_resumes_after_the_last_name() {
        let snapshots = Snapshots::default();
        let (id, entries, start) = snapshots.fresh("d", names(&["c", "a", "b"]), None);
        assert_eq!((start, entries[0].as_str()), (0, "a"));
        let cursor = Cursor::after(id, &entries, 1).unwrap();
        assert!(matches!(
            snapshots.resume("d", Some(&cursor)),
            Resume::Kept(_, _, 1)
        ));
        for i in 0..KEEP {
            snapshots.fresh(&format!("other{i}"), names(&["x"]), None);
        }
        assert!(matches!(snapshots.resume("d", Some(&cursor)), Resume::Read));
        // Read again, with a name added before the cursor: nothing repeats.
        let (_, entries, start) = snapshots.fresh("d", names(&["c", "a", "b", "0"]), Some(&cursor));
        assert_eq!(&entries[start..], &names(&["b", "c"])[..]);
        assert!(Cursor::after(id, &entries, entries.len()).is_none());
    }
}
