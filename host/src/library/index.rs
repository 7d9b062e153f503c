//! The persisted library index: one record per file found on an origin.

use std::collections::BTreeMap;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::tag_reader::Tags;
use crate::store::{bump_tracks_revision, Store, StoreError, TRACKS};

/// What a file is to the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileRole {
    /// An audio track.
    Audio,
    /// An album cover image.
    Cover,
}

/// One file on one origin, as the last scan saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub origin: String,
    pub path: String,
    pub size: u64,
    pub mtime_ns: u64,
    /// The origin's version token (`Metadata::version`), if it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub role: FileRole,
    /// The tags (empty for covers, and for audio whose tags could not be read).
    pub tags: Tags,
    /// Why the tags could not be read, for the scan report.
    pub problem: Option<String>,
    /// How many tag reads in a row the origin failed (an outage, not a bad file;
    /// 0 once read): `tags` are then the previous version's, or empty if none
    /// was read, and the next scan reads them again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending_reads: u32,
    /// Never shown yet: no read of its tags ever succeeded, so its name in the
    /// tree is not known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unseen: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl FileRecord {
    /// The index key: `origin \0 path`.
    pub fn key(&self) -> String {
        record_key(&self.origin, &self.path)
    }

    /// Whether the tags must be read again: the last read failed with its origin.
    pub fn tags_pending(&self) -> bool {
        self.pending_reads > 0
    }

    /// Whether the tree may show it: a track whose tags were never read is not
    /// shown yet, since its name would change once they are.
    pub fn tags_known(&self) -> bool {
        !self.unseen
    }
}

/// Whether origin path `path` is `dir` or lies below it (`""` is the root).
pub fn at_or_below(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The index key of a file.
pub fn record_key(origin: &str, path: &str) -> String {
    format!("{origin}\0{path}")
}

/// Every record, by key.
pub fn load_all(store: &Store) -> Result<BTreeMap<String, FileRecord>, StoreError> {
    store.read(|txn| {
        let table = txn.open_table(TRACKS)?;
        let mut out = BTreeMap::new();
        for row in table.iter()? {
            let (key, value) = row?;
            match serde_json::from_slice::<FileRecord>(value.value()) {
                Ok(record) => {
                    out.insert(key.value().to_owned(), record);
                }
                Err(e) => tracing::warn!("skipping a damaged index record: {e}"),
            }
        }
        Ok(out)
    })
}

/// The record of `path` on `origin`, if the index holds one.
pub fn get(store: &Store, origin: &str, path: &str) -> Result<Option<FileRecord>, StoreError> {
    store.read(|txn| {
        let table = txn.open_table(TRACKS)?;
        let key = record_key(origin, path);
        Ok(table
            .get(key.as_str())?
            .and_then(|value| serde_json::from_slice::<FileRecord>(value.value()).ok()))
    })
}

/// Every record, in key order, one decoded at a time: `each` sees a record
/// and drops it (or keeps what it needs), so the index is never all in
/// memory at once.
pub fn for_each(store: &Store, mut each: impl FnMut(FileRecord)) -> Result<(), StoreError> {
    store.read(|txn| {
        let table = txn.open_table(TRACKS)?;
        for row in table.iter()? {
            let (_, value) = row?;
            match serde_json::from_slice::<FileRecord>(value.value()) {
                Ok(record) => each(record),
                Err(e) => tracing::warn!("skipping a damaged index record: {e}"),
            }
        }
        Ok(())
    })
}

/// Whether the index holds any record of `origin` (one key read).
pub fn holds_origin(store: &Store, origin: &str) -> Result<bool, StoreError> {
    let prefix = record_key(origin, "");
    store.read(|txn| {
        let table = txn.open_table(TRACKS)?;
        let first = table.range(prefix.as_str()..)?.next().transpose()?;
        Ok(first.is_some_and(|(key, _)| key.value().starts_with(&prefix)))
    })
}

/// The records of `origin` at or below each of `paths` (a file, or a folder
/// and everything under it; `""` is the whole origin), by key: what a change
/// batch needs, read by key range, so it costs what changed, not the library.
pub fn load_below<'p>(
    store: &Store,
    origin: &str,
    paths: impl IntoIterator<Item = &'p String>,
) -> Result<BTreeMap<String, FileRecord>, StoreError> {
    let paths: Vec<&String> = paths.into_iter().collect();
    store.read(|txn| {
        let table = txn.open_table(TRACKS)?;
        let mut out = BTreeMap::new();
        for path in &paths {
            let start = record_key(origin, path);
            for row in table.range(start.as_str()..)? {
                let (key, value) = row?;
                let key = key.value();
                let Some(below) = key.strip_prefix(&start) else {
                    break;
                };
                // `a/b` is followed by `a/b.flac` and `a/bc/…`: not below it.
                if !(below.is_empty() || below.starts_with('/') || path.is_empty()) {
                    continue;
                }
                match serde_json::from_slice::<FileRecord>(value.value()) {
                    Ok(record) => {
                        out.insert(key.to_owned(), record);
                    }
                    Err(e) => tracing::warn!("skipping a damaged index record: {e}"),
                }
            }
        }
        Ok(out)
    })
}

/// The records of `origin` whose paths are at or after `from` and before
/// `to` (the origin's start and end where `None`), in path order: what the
/// tier's segments of that stretch hold.
pub fn load_range(
    store: &Store,
    origin: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Vec<FileRecord>, StoreError> {
    let start = record_key(origin, from.unwrap_or(""));
    let end = to.map(|to| record_key(origin, to));
    let prefix = record_key(origin, "");
    store.read(|txn| {
        let table = txn.open_table(TRACKS)?;
        let mut out = Vec::new();
        for row in table.range(start.as_str()..)? {
            let (key, value) = row?;
            let key = key.value();
            if !key.starts_with(&prefix) || end.as_deref().is_some_and(|end| key >= end) {
                break;
            }
            match serde_json::from_slice::<FileRecord>(value.value()) {
                Ok(record) => out.push(record),
                Err(e) => tracing::warn!("skipping a damaged index record: {e}"),
            }
        }
        Ok(out)
    })
}

/// Replaces the records of `origin` with `unchanged` (as the index holds them),
/// `records`, and the paths in `written` (written by [`write_records`] during
/// the same scan), except at or below the folders in `unlisted`: those could
/// not be listed, so what the index holds for them stays (unreachable is not
/// deleted).
///
/// What stays is looked up in one sorted list of paths, not a set of keys:
/// at 1,000,000 tracks the set cost some 130 bytes a track at the end of a
/// scan, the list about 90 (the paths were written already).
pub fn replace_origin(
    store: &Store,
    origin: &str,
    unchanged: &[&str],
    records: &[FileRecord],
    unlisted: &[String],
    written: &[Box<str>],
) -> Result<Applied, StoreError> {
    let mut seen: Vec<&str> = written
        .iter()
        .map(|p| &**p)
        .chain(unchanged.iter().copied())
        .chain(records.iter().map(|r| r.path.as_str()))
        .collect();
    seen.sort_unstable();
    store.write(true, |txn| {
        let mut applied = Applied {
            written: Written::Same,
            replaced: Vec::new(),
        };
        let mut table = txn.open_table(TRACKS)?;
        let prefix = record_key(origin, "");
        let stale: Vec<String> = table
            .range(prefix.as_str()..)?
            .map_while(|row| row.ok().map(|(k, _)| k.value().to_owned()))
            .take_while(|k| k.starts_with(&prefix))
            .filter(|k| {
                let path = &k[prefix.len()..];
                seen.binary_search(&path).is_err()
                    && !unlisted.iter().any(|dir| at_or_below(path, dir))
            })
            .collect();
        let mut changed = remove(&mut table, stale, &mut applied)?;
        changed |= upsert(&mut table, records, &mut applied)?;
        drop(table);
        applied.written = written_by(txn, changed)?;
        Ok(applied)
    })
}

/// Writes `records` (a scan's, as it goes) without waiting for the disk: the
/// scan's last write, [`replace_origin`], is durable and covers these.
pub fn write_records(store: &Store, records: &[FileRecord]) -> Result<Written, StoreError> {
    store.write(false, |txn| {
        let mut applied = Applied {
            written: Written::Same,
            replaced: Vec::new(),
        };
        let mut table = txn.open_table(TRACKS)?;
        let changed = upsert(&mut table, records, &mut applied)?;
        drop(table);
        written_by(txn, changed)
    })
}

/// Removes the records at `keys`, the old versions kept in `applied`;
/// whether there were any.
fn remove(
    table: &mut redb::Table<&str, &[u8]>,
    keys: impl IntoIterator<Item = String>,
    applied: &mut Applied,
) -> Result<bool, redb::Error> {
    let mut changed = false;
    for key in keys {
        if let Some(old) = table.remove(key.as_str())? {
            applied.keep_old(old.value());
        }
        changed = true;
    }
    Ok(changed)
}

/// Writes each of `records` that differs from what the index holds, the old
/// versions kept in `applied`; whether any did.
fn upsert(
    table: &mut redb::Table<&str, &[u8]>,
    records: &[FileRecord],
    applied: &mut Applied,
) -> Result<bool, redb::Error> {
    let mut changed = false;
    for record in records {
        let value = serde_json::to_vec(record).expect("records serialise");
        let key = record.key();
        let same = match table.get(key.as_str())? {
            Some(old) if old.value() == value.as_slice() => true,
            Some(old) => {
                applied.keep_old(old.value());
                false
            }
            None => false,
        };
        if !same {
            table.insert(key.as_str(), value.as_slice())?;
            changed = true;
        }
    }
    Ok(changed)
}

/// What a write that `changed` the records (or not) did to their revision.
fn written_by(txn: &redb::WriteTransaction, changed: bool) -> Result<Written, redb::Error> {
    Ok(match changed {
        false => Written::Same,
        true => match bump_tracks_revision(txn)? {
            Some((before, after)) => Written::Changed { before, after },
            None => Written::Unknown,
        },
    })
}

/// Applies a change on `origin`: drops the records at or below each of `removed`
/// (a file path, a folder path, or `""` for the whole origin) but not those at or
/// below a folder in `kept` or in `unchanged` (the keys of records found as the
/// index holds them, left as they are), then writes `upserts`.
pub fn apply_change(
    store: &Store,
    origin: &str,
    removed: &[String],
    kept: &[String],
    unchanged: &[&str],
    upserts: &[FileRecord],
) -> Result<Applied, StoreError> {
    // A scan finds every record: writing only those that differ keeps an
    // unchanged library from rewriting (and growing) the index, and lets the
    // tree be rebuilt only when something changed.
    let upserted: std::collections::HashSet<String> = unchanged
        .iter()
        .map(|key| key.to_string())
        .chain(upserts.iter().map(FileRecord::key))
        .collect();
    store.write(true, |txn| {
        let mut changed = false;
        let mut applied = Applied {
            written: Written::Same,
            replaced: Vec::new(),
        };
        let mut table = txn.open_table(TRACKS)?;
        for path in removed {
            let exact = record_key(origin, path);
            let below = if path.is_empty() {
                exact.clone()
            } else {
                format!("{exact}/")
            };
            let stale: Vec<String> = table
                .range(exact.as_str()..)?
                .map_while(|row| row.ok().map(|(k, _)| k.value().to_owned()))
                // `a/b c` sorts between `a/b` and `a/b/x`: scan every key with the
                // prefix, keep the path itself and what is below it.
                .take_while(|k| k.starts_with(&exact))
                .filter(|k| k == &exact || k.starts_with(&below))
                .filter(|k| {
                    let path = &k[origin.len() + 1..];
                    !kept.iter().any(|dir| at_or_below(path, dir))
                })
                .collect();
            // Those written again below are not changes if they come back the same.
            let stale = stale.into_iter().filter(|key| !upserted.contains(key));
            changed |= remove(&mut table, stale, &mut applied)?;
        }
        changed |= upsert(&mut table, upserts, &mut applied)?;
        drop(table);
        applied.written = written_by(txn, changed)?;
        Ok(applied)
    })
}

/// What [`apply_change`] did.
#[derive(Debug)]
pub struct Applied {
    pub written: Written,
    /// The records it replaced or removed, as the index held them.
    pub replaced: Vec<FileRecord>,
}

impl Applied {
    /// Keeps the old version `old` this write replaces or removes, read in its
    /// own transaction: what a tree update must take out.
    fn keep_old(&mut self, old: &[u8]) {
        match serde_json::from_slice::<FileRecord>(old) {
            Ok(record) => self.replaced.push(record),
            Err(e) => tracing::warn!("skipping a damaged index record: {e}"),
        }
    }
}

/// What a write did to the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Nothing: every record was already as written.
    Same,
    /// They changed, from the tracks stamp `before` to `after`.
    Changed { before: u64, after: u64 },
    /// They changed, in an index without stamps to tell from what.
    Unknown,
}

/// The records directly in folder `dir` (`""` is the top) of each of
/// `origins`, read by key range: the folders below are skipped over, not
/// read.
pub fn load_in_dir(
    store: &Store,
    origins: &[String],
    dir: &str,
) -> Result<Vec<FileRecord>, StoreError> {
    store.read(|txn| {
        let table = txn.open_table(TRACKS)?;
        let mut out = Vec::new();
        for origin in origins {
            let prefix = match dir.is_empty() {
                true => record_key(origin, ""),
                false => record_key(origin, &format!("{dir}/")),
            };
            let mut from = prefix.clone();
            'seek: loop {
                for row in table.range(from.as_str()..)? {
                    let (key, value) = row?;
                    let key = key.value();
                    let Some(rest) = key.strip_prefix(&prefix) else {
                        break 'seek;
                    };
                    if let Some((sub, _)) = rest.split_once('/') {
                        // A folder below: go on past everything in it
                        // ('0' follows '/').
                        from = format!("{prefix}{sub}0");
                        continue 'seek;
                    }
                    match serde_json::from_slice::<FileRecord>(value.value()) {
                        Ok(record) => out.push(record),
                        Err(e) => tracing::warn!("skipping a damaged index record: {e}"),
                    }
                }
                break;
            }
        }
        Ok(out)
    })
}

/// Records for tests elsewhere in the library.
#[cfg(test)]
impl FileRecord {
    /// An audio file of `size` bytes on `origin` at `path`, no tag read.
    pub fn audio(origin: &str, path: &str, size: u64) -> FileRecord {
        FileRecord {
            tags: Default::default(),
            ..FileRecord::tagged(origin, path, size, ("", "", ""))
        }
    }

    /// An audio file of `size` bytes on `origin` at `path`, read with these
    /// tags (artist, album, title).
    pub fn tagged(
        origin: &str,
        path: &str,
        size: u64,
        (artist, album, title): (&str, &str, &str),
    ) -> FileRecord {
        FileRecord {
            origin: origin.into(),
            path: path.into(),
            size,
            mtime_ns: 1,
            version: None,
            role: FileRole::Audio,
            tags: crate::library::tag_reader::Tags {
                title: Some(title.into()),
                artist: Some(artist.into()),
                album: Some(album.into()),
                ..Default::default()
            },
            problem: None,
            pending_reads: 0,
            unseen: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(origin: &str, path: &str) -> FileRecord {
        FileRecord {
            origin: origin.into(),
            path: path.into(),
            size: 1,
            mtime_ns: 1,
            version: None,
            role: FileRole::Audio,
            tags: Tags::default(),
            problem: None,
            pending_reads: 0,
            unseen: false,
        }
    }

    #[test]
    fn at_or_below_matches_whole_segments() {
        assert!(at_or_below("a/b/c.flac", ""));
        assert!(at_or_below("a/b/c.flac", "a/b"));
        assert!(at_or_below("a/b", "a/b"));
        assert!(!at_or_below("a/bc/d.flac", "a/b"));
        assert!(!at_or_below("a", "a/b"));
    }

    #[test]
    fn records_below_paths_are_read_by_range_and_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.redb")).unwrap();
        let all: Vec<_> = [
            ("o", "a/b.flac"),
            ("o", "a/b/1.flac"),
            ("o", "a/b/deep/2.flac"),
            ("o", "a/bc/3.flac"),
            ("o", "a/c.flac"),
            ("p", "a/b/4.flac"),
            ("o", "z.flac"),
        ]
        .iter()
        .map(|(o, p)| record(o, p))
        .collect();
        apply_change(&store, "o", &[], &[], &[], &all).unwrap();
        let paths = |wanted: &[&str]| -> Vec<String> {
            let wanted: Vec<String> = wanted.iter().map(|p| p.to_string()).collect();
            load_below(&store, "o", &wanted)
                .unwrap()
                .into_values()
                .map(|r| r.path)
                .collect()
        };
        assert_eq!(paths(&["a/b"]), ["a/b/1.flac", "a/b/deep/2.flac"]);
        assert_eq!(paths(&["a/b.flac", "z.flac"]), ["a/b.flac", "z.flac"]);
        assert_eq!(paths(&["gone"]), Vec::<String>::new());
        // The whole origin, and only it.
        let whole = paths(&[""]);
        assert_eq!(whole.len(), 6);
        // Each agrees with the whole index read at once.
        let every = load_all(&store).unwrap();
        for (key, record) in load_below(&store, "o", &["a".to_string()]).unwrap() {
            assert_eq!(every.get(&key).map(|r| &r.path), Some(&record.path));
        }
    }

    #[test]
    fn a_replaced_origin_keeps_what_lies_below_unlisted_folders_and_what_the_scan_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.redb")).unwrap();
        let before = [
            "here/1.flac",
            "nas/2.flac",
            "nas/deep/3.flac",
            "nasty/4.flac",
        ];
        let before: Vec<_> = before.iter().map(|p| record("o", p)).collect();
        apply_change(
            &store,
            "o",
            &[],
            &[],
            &[],
            &[before.clone(), vec![record("p", "nas/5.flac")]].concat(),
        )
        .unwrap();
        // Written as the scan went: kept by the scan's last write.
        write_records(&store, &[record("o", "here/early.flac")]).unwrap();
        replace_origin(
            &store,
            "o",
            &[before[0].path.as_str()],
            &[record("o", "here/new.flac")],
            &["nas".into()],
            &["here/early.flac".into()],
        )
        .unwrap();
        let paths: Vec<_> = load_all(&store)
            .unwrap()
            .into_values()
            .map(|r| format!("{}:{}", r.origin, r.path))
            .collect();
        assert_eq!(
            paths,
            [
                "o:here/1.flac",
                "o:here/early.flac",
                "o:here/new.flac",
                "o:nas/2.flac",
                "o:nas/deep/3.flac",
                "p:nas/5.flac"
            ]
        );
    }

    #[test]
    fn old_records_without_the_pending_flag_still_load() {
        let old = r#"{"origin":"o","path":"a.flac","size":1,"mtime_ns":1,"role":"Audio","tags":{"title":null,"artist":null,"album_artist":null,"album":null,"track":null,"disc":null,"disc_total":null,"compilation":false},"problem":null}"#;
        let record: FileRecord = serde_json::from_str(old).unwrap();
        assert!(!record.tags_pending() && record.tags_known());
        let pending = FileRecord {
            pending_reads: 1,
            unseen: true,
            ..record
        };
        assert!(
            pending.tags_pending() && !pending.tags_known(),
            "never read: not shown yet"
        );
    }

    /// A folder's own records, on each origin asked for: those below it and
    /// in its namesakes (`a/b c`, `a/b.flac`) are not.
    #[test]
    fn records_in_a_folder_are_its_own_on_every_origin() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.redb")).unwrap();
        let all: Vec<_> = [
            ("o", "top.flac"),
            ("o", "a/1.flac"),
            ("o", "a/b/2.flac"),
            ("o", "a/b c/3.flac"),
            ("o", "a/c.flac"),
            ("o", "a/d/e/4.flac"),
            ("o", "a/z.flac"),
            ("p", "a/1.flac"),
            ("q", "a/5.flac"),
            ("oo", "a/6.flac"),
        ]
        .iter()
        .map(|(o, p)| record(o, p))
        .collect();
        for origin in ["o", "p", "q", "oo"] {
            let mine: Vec<_> = all.iter().filter(|r| r.origin == origin).cloned().collect();
            apply_change(&store, origin, &[], &[], &[], &mine).unwrap();
        }
        let paths = |origins: &[&str], dir: &str| {
            let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
            let mut found: Vec<String> = load_in_dir(&store, &origins, dir)
                .unwrap()
                .into_iter()
                .map(|r| format!("{}:{}", r.origin, r.path))
                .collect();
            found.sort();
            found
        };
        assert_eq!(
            paths(&["o", "p"], "a"),
            ["o:a/1.flac", "o:a/c.flac", "o:a/z.flac", "p:a/1.flac"]
        );
        assert_eq!(paths(&["o"], ""), ["o:top.flac"]);
        assert_eq!(paths(&["o"], "a/b"), ["o:a/b/2.flac"]);
        assert_eq!(paths(&["o"], "a/d"), Vec::<String>::new());
        assert_eq!(paths(&["oo", "q"], "a"), ["oo:a/6.flac", "q:a/5.flac"]);
    }
}
