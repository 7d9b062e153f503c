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
use crate::origins::registry::{RegisteredOrigin, Registry};
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
        match scan_subtree(&origin, cache, &known, progress, "").await {
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

/// Records of every library file at or below `dir` on `origin`, reusing `known`
/// records of unchanged files and reading the tags of the others. Fails only when
/// `dir` itself cannot be listed.
pub async fn scan_subtree(
    origin: &Arc<RegisteredOrigin>,
    cache: &Arc<ContentCache>,
    known: &BTreeMap<String, FileRecord>,
    progress: &Arc<ScanProgress>,
    dir: &str,
) -> OriginResult<Vec<FileRecord>> {
    let mut records = Vec::new();
    let mut to_read = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(current) = dirs.pop() {
        let mut cursor: Option<String> = None;
        loop {
            let page = match origin.list(&current, cursor.as_deref(), PAGE).await {
                Ok(page) => page,
                Err(e) if current == dir => return Err(e),
                Err(e) => {
                    tracing::warn!(origin = %origin.id, dir = %current, "cannot list: {e}");
                    break;
                }
            };
            for entry in page.entries {
                let path = origin_api::path::join(&current, &entry.name);
                if entry.metadata.kind == EntryKind::Directory {
                    dirs.push(path);
                } else if let Some(record) = library_file(&origin.id, path, &entry.metadata) {
                    progress.files.fetch_add(1, Ordering::Relaxed);
                    match reusable(known, &record) {
                        Some(done) => records.push(done),
                        None => to_read.push(record),
                    }
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    records.extend(read_tags_of(origin, cache, progress, to_read).await);
    records.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(records)
}

/// The record of a file the library shows (audio or cover), without tags yet;
/// `None` for anything else.
pub fn library_file(origin: &str, path: String, meta: &origin_api::Metadata) -> Option<FileRecord> {
    let name = path.rsplit('/').next().unwrap_or(&path);
    if meta.kind != EntryKind::File {
        return None;
    }
    let role = if is_audio(name) {
        FileRole::Audio
    } else if is_cover(name) {
        FileRole::Cover
    } else {
        return None;
    };
    Some(FileRecord {
        origin: origin.to_owned(),
        role,
        path,
        size: meta.size,
        mtime_ns: meta
            .modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        tags: Tags::default(),
        problem: None,
    })
}

/// The record to use as it is: the known one when the file did not change, or a
/// cover (which has no tags). `None`: the file's tags must be read.
pub fn reusable(known: &BTreeMap<String, FileRecord>, record: &FileRecord) -> Option<FileRecord> {
    match known.get(&record.key()) {
        Some(old) if old.size == record.size && old.mtime_ns == record.mtime_ns => {
            Some(old.clone())
        }
        _ if record.role == FileRole::Cover => Some(record.clone()),
        _ => None,
    }
}

/// Reads the tags of `records`, a few at a time, through the content cache.
pub async fn read_tags_of(
    origin: &Arc<RegisteredOrigin>,
    cache: &Arc<ContentCache>,
    progress: &Arc<ScanProgress>,
    records: Vec<FileRecord>,
) -> Vec<FileRecord> {
    let permits = Arc::new(Semaphore::new(PARALLEL_TAG_READS));
    let mut reads = tokio::task::JoinSet::new();
    for mut record in records {
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
    let mut done = Vec::new();
    while let Some(read) = reads.join_next().await {
        if let Ok(Some(record)) = read {
            done.push(record);
        }
    }
    done
}
