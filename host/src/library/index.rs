//! The persisted library index: one record per file found on an origin.

use std::collections::BTreeMap;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::tag_reader::Tags;
use crate::store::{Store, StoreError, TRACKS};

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
    pub role: FileRole,
    /// The tags (empty for covers, and for audio whose tags could not be read).
    pub tags: Tags,
    /// Why the tags could not be read, for the scan report.
    pub problem: Option<String>,
}

impl FileRecord {
    /// The index key: `origin \0 path`.
    pub fn key(&self) -> String {
        record_key(&self.origin, &self.path)
    }
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

/// Replaces the records of `origin` with `records`.
pub fn replace_origin(
    store: &Store,
    origin: &str,
    records: &[FileRecord],
) -> Result<(), StoreError> {
    apply_change(store, origin, &[String::new()], records)
}

/// Applies a change on `origin`: drops the records at or below each of `removed`
/// (a file path, a folder path, or `""` for the whole origin), then writes `upserts`.
pub fn apply_change(
    store: &Store,
    origin: &str,
    removed: &[String],
    upserts: &[FileRecord],
) -> Result<(), StoreError> {
    store.write(true, |txn| {
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
                .collect();
            for key in stale {
                table.remove(key.as_str())?;
            }
        }
        for record in upserts {
            let value = serde_json::to_vec(record).expect("records serialise");
            table.insert(record.key().as_str(), value.as_slice())?;
        }
        Ok(())
    })
}
