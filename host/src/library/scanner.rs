//! The scan: walk every live origin with paged listings, read the tags of new or
//! changed audio files through the content cache, and record what was found.
//!
//! A file whose size and mtime match the index keeps its recorded tags without a
//! single read, so a rescan of an unchanged library only lists. Tags are read by
//! lofty on a blocking thread through [`RangeReader`], eight files at a time; the
//! bytes it asks for are fetched with ranged reads and stored as tag chunks, so a
//! music server scanning the mount later is answered from the cache.
//!
//! Bad files never stop a scan: a file whose tags cannot be read is still listed
//! (named after its file name) and reported. An origin whose root cannot be listed
//! keeps its previous records: unreachable is not deleted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use origin_api::{EntryKind, OriginResult};
use tokio::sync::Semaphore;

use super::index::{self, FileRecord, FileRole};
use super::media::{is_audio, is_cover};
use super::tag_reader::{read_tags, RangeReader, Tags};
use crate::cache::content_cache::{ContentCache, Purpose};
use crate::registry::{RegisteredOrigin, Registry};
use crate::store::Store;

/// Listing page size.
const PAGE: u32 = 1000;
/// Files whose tags are read at once.
const PARALLEL_TAG_READS: usize = 8;

/// Live figures for a progress bar.
#[derive(Default)]
pub struct ScanProgress {
    /// Files found so far.
    pub files: AtomicU64,
    /// Files whose tags were read (not reused) so far.
    pub tags_read: AtomicU64,
    /// Bytes read from origins (or the cache) for tags.
    pub bytes_read: AtomicU64,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Audio files and covers recorded.
    pub files: usize,
    /// Files whose tags were read this time.
    pub tags_read: usize,
    /// Bytes read for tags.
    pub bytes_read: u64,
    /// Files that could not be read properly: origin, path, reason.
    pub problems: Vec<(String, String, String)>,
    /// Origins that could not be walked, and why (their records were kept).
    pub failed_origins: Vec<(String, String)>,
}

/// Scans every live origin and updates the index.
pub async fn scan(
    registry: &Registry,
    cache: &Arc<ContentCache>,
    store: &Store,
    progress: &Arc<ScanProgress>,
) -> ScanReport {
    let mut report = ScanReport::default();
    let known = match index::load_all(store) {
        Ok(known) => known,
        Err(e) => {
            tracing::warn!("{e}; rescanning everything");
            BTreeMap::new()
        }
    };
    for origin in registry.all() {
        match scan_origin(&origin, cache, &known, progress).await {
            Ok(records) => {
                report.files += records.len();
                for r in records
                    .iter()
                    .filter_map(|r| r.problem.as_ref().map(|p| (r, p)))
                {
                    report
                        .problems
                        .push((r.0.origin.clone(), r.0.path.clone(), r.1.clone()));
                }
                if let Err(e) = index::replace_origin(store, &origin.id, &records) {
                    report
                        .failed_origins
                        .push((origin.id.clone(), e.to_string()));
                }
            }
            Err(e) => {
                tracing::warn!(origin = %origin.id, "cannot scan: {e}");
                report
                    .failed_origins
                    .push((origin.id.clone(), e.to_string()));
            }
        }
    }
    report.tags_read = progress.tags_read.load(Ordering::Relaxed) as usize;
    report.bytes_read = progress.bytes_read.load(Ordering::Relaxed);
    report
}

async fn scan_origin(
    origin: &Arc<RegisteredOrigin>,
    cache: &Arc<ContentCache>,
    known: &BTreeMap<String, FileRecord>,
    progress: &Arc<ScanProgress>,
) -> OriginResult<Vec<FileRecord>> {
    let mut records = Vec::new();
    let mut to_read = Vec::new();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        let mut cursor: Option<String> = None;
        loop {
            let page = match origin.list(&dir, cursor.as_deref(), PAGE).await {
                Ok(page) => page,
                Err(e) if dir.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(origin = %origin.id, dir = %dir, "cannot list: {e}");
                    break;
                }
            };
            for entry in page.entries {
                let path = origin_api::path::join(&dir, &entry.name);
                match entry.metadata.kind {
                    EntryKind::Directory => dirs.push(path),
                    EntryKind::File if is_audio(&entry.name) || is_cover(&entry.name) => {
                        progress.files.fetch_add(1, Ordering::Relaxed);
                        let record = FileRecord {
                            origin: origin.id.clone(),
                            path,
                            size: entry.metadata.size,
                            mtime_ns: entry
                                .metadata
                                .modified
                                .duration_since(UNIX_EPOCH)
                                .map_or(0, |d| d.as_nanos() as u64),
                            role: if is_audio(&entry.name) {
                                FileRole::Audio
                            } else {
                                FileRole::Cover
                            },
                            tags: Tags::default(),
                            problem: None,
                        };
                        match known.get(&record.key()) {
                            Some(old)
                                if old.size == record.size && old.mtime_ns == record.mtime_ns =>
                            {
                                records.push(old.clone())
                            }
                            _ if record.role == FileRole::Cover => records.push(record),
                            _ => to_read.push(record),
                        }
                    }
                    _ => {}
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }

    let permits = Arc::new(Semaphore::new(PARALLEL_TAG_READS));
    let mut reads = tokio::task::JoinSet::new();
    for mut record in to_read {
        let (origin, cache, progress, permits) = (
            origin.clone(),
            cache.clone(),
            progress.clone(),
            permits.clone(),
        );
        reads.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let runtime = tokio::runtime::Handle::current();
            let read = tokio::task::spawn_blocking(move || {
                let version = crate::cache::manifest::FileVersion {
                    origin: record.origin.clone(),
                    path: record.path.clone(),
                    size: record.size,
                    mtime_ns: record.mtime_ns,
                };
                let mut reader = RangeReader::new(record.size, |offset, len| {
                    runtime
                        .block_on(cache.read(
                            &version,
                            Some(&origin),
                            offset,
                            len,
                            len,
                            Purpose::Tag,
                        ))
                        .map_err(std::io::Error::other)
                });
                let tags = read_tags(&mut reader);
                progress
                    .bytes_read
                    .fetch_add(reader.fetched, Ordering::Relaxed);
                progress.tags_read.fetch_add(1, Ordering::Relaxed);
                match tags {
                    Ok(tags) => record.tags = tags,
                    Err(problem) => record.problem = Some(problem),
                }
                record
            })
            .await;
            read.ok()
        });
    }
    while let Some(done) = reads.join_next().await {
        if let Ok(Some(record)) = done {
            records.push(record);
        }
    }
    records.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(records)
}
