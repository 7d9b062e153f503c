//! The scan: walk every live origin with paged listings, read the tags of new or
//! changed audio files through the content cache, and record what was found.
//!
//! A file whose size and mtime match the index keeps its recorded tags without a
//! single read, so a rescan of an unchanged library only lists. Tags are read by
//! lofty on blocking threads through [`RangeReader`], while the walk goes on; the
//! bytes it asks for are fetched with ranged reads and stored as tag chunks, so a
//! music server scanning the mount later is answered from the cache.
//!
//! Bad files never stop a scan: a file whose tags cannot be read is still listed
//! (named after its file name) and reported. Unreachable is never deleted: an
//! origin whose root cannot be listed keeps its previous records, a folder that
//! cannot be listed keeps the records below it, and a file whose tag read failed
//! because the origin did keeps its previous tags and is read again next time.
//! Only a listing that succeeds and lacks a path removes that path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use origin_api::{EntryKind, ErrorKind, OriginError, OriginResult};

use super::index::{self, FileRecord, FileRole};
use super::media::{is_audio, is_cover};
use super::tag_reader::{RangeReader, Tags};
use crate::cache::content_cache::ContentCache;
use crate::cache::fill::Purpose;
use crate::origins::registry::RegisteredOrigin;
use crate::read::failover::ReadPolicy;
use crate::read::session::{Route, Session};
use crate::store::Store;

/// Listing page size.
const PAGE: u32 = 1000;
/// Records a scan writes to the index at a time, as it goes: a first scan
/// holds this many, not the library (at 1,000,000 tracks, records held to the
/// end were some 880 MB).
pub const WRITE_EVERY: usize = 2_000;
/// Files listed and waiting for their tags past which the walk stops listing
/// until the reads catch up: listing is faster than reading tags, and the
/// queue would otherwise hold every file of the library.
const READ_QUEUE: usize = 4 * PAGE as usize;
/// Failed tag reads in a row after which a file is taken to be bad, not its
/// origin down: with the retry scans' backoff, 7.5 minutes at the default check
/// interval.
pub const GIVE_UP: u32 = 5;

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
    /// Folders that could not be listed: origin, folder, why (their records were
    /// kept).
    pub unlisted: Vec<(String, String, String)>,
    /// Files whose tags could not be read because the origin failed; the next scan
    /// reads them again.
    pub tags_pending: usize,
}

impl ScanReport {
    /// Whether the scan saw everything: no origin, folder or tag read failed.
    pub fn complete(&self) -> bool {
        self.failed_origins.is_empty() && self.unlisted.is_empty() && self.tags_pending == 0
    }
}

/// Scans every live origin and updates the index.
pub async fn scan(
    origins: Vec<Arc<RegisteredOrigin>>,
    cache: &Arc<ContentCache>,
    store: &Arc<Store>,
    progress: &Arc<ScanProgress>,
) -> ScanReport {
    let mut report = ScanReport::default();
    let known = match known_files(store) {
        Ok(known) => known,
        Err(e) => {
            tracing::warn!("{e}; rescanning everything");
            KnownFiles::new()
        }
    };
    // Every origin at once: one that answers slowly (a bucket far away) does
    // not hold up the tag reads of the others.
    let walks = origins.iter().map(|origin| {
        let known = &known;
        async move {
            let mut written = Written::default();
            let walk = {
                let mut write = |records: &mut Vec<FileRecord>| written.write(store, records);
                scan_subtree(origin, cache, store, known, progress, "", &mut write).await
            };
            (walk, written)
        }
    });
    let walked = futures_util::future::join_all(walks).await;
    for (origin, (walk, mut written)) in origins.iter().zip(walked) {
        match walk {
            Ok(subtree) => {
                report.files += subtree.unchanged.len() + written.paths.len();
                for (key, known) in &subtree.unchanged {
                    written.count_known(&origin.id, key, known);
                }
                written.count(subtree.records.iter());
                report.files += subtree.records.len();
                report.tags_pending += subtree.kept;
                report.problems.append(&mut written.problems);
                report.tags_pending += written.tags_pending;
                for (dir, why) in &subtree.unlisted {
                    report
                        .unlisted
                        .push((origin.id.clone(), dir.clone(), why.clone()));
                }
                let unlisted: Vec<String> = subtree.unlisted.into_iter().map(|(d, _)| d).collect();
                let unchanged: Vec<&str> = subtree
                    .unchanged
                    .iter()
                    .map(|(key, _)| path_in(&origin.id, key))
                    .collect();
                if let Err(e) = index::replace_origin(
                    store,
                    &origin.id,
                    &unchanged,
                    &subtree.records,
                    &unlisted,
                    &written.paths,
                ) {
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

/// What a scan wrote of one origin as it went ([`WRITE_EVERY`]), and what
/// the report needs of it.
#[derive(Default)]
struct Written {
    /// The paths written, for the last write to keep.
    paths: Vec<Box<str>>,
    problems: Vec<(String, String, String)>,
    tags_pending: usize,
    /// Why a write failed: the records are then kept for the last write.
    failed: bool,
}

impl Written {
    /// Writes `records` and takes them, or leaves them if the write fails.
    fn write(&mut self, store: &Store, records: &mut Vec<FileRecord>) {
        if self.failed {
            return;
        }
        match index::write_records(store, records) {
            Ok(_) => {
                self.count(records.iter());
                self.paths
                    .extend(records.drain(..).map(|r| r.path.into_boxed_str()));
            }
            Err(e) => {
                tracing::warn!("cannot write a scan's records as it goes; keeping them: {e}");
                self.failed = true;
            }
        }
    }

    /// Counts the problem of a file of `origin` found unchanged, by its
    /// index key.
    fn count_known(&mut self, origin: &str, key: &str, known: &Known) {
        if let Some(problem) = &known.problem {
            self.problems.push((
                origin.to_owned(),
                path_in(origin, key).to_owned(),
                problem.to_string(),
            ));
        }
        self.tags_pending += usize::from(known.pending_reads > 0);
    }

    /// Counts the problems of `records` for the report.
    fn count<'r>(&mut self, records: impl Iterator<Item = &'r FileRecord>) {
        for r in records {
            if let Some(problem) = &r.problem {
                self.problems
                    .push((r.origin.clone(), r.path.clone(), problem.clone()));
            }
            self.tags_pending += usize::from(r.tags_pending());
        }
    }
}

/// What a scan needs to know of a file the index holds, before it looks at
/// the origin: whether the file is unchanged, and what to report of it. Not
/// the whole record: a rescan holds one for every file of the library, and
/// whole records were some 960 bytes a track (their tags, their problem,
/// owned strings); this is about a fifth of that. A file whose tags must be
/// kept through a failed read is looked up in the index then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub size: u64,
    pub mtime_ns: u64,
    pub version: Option<Box<str>>,
    pub pending_reads: u32,
    pub problem: Option<Box<str>>,
}

impl From<&FileRecord> for Known {
    fn from(record: &FileRecord) -> Known {
        Known {
            size: record.size,
            mtime_ns: record.mtime_ns,
            version: record.version.as_deref().map(Into::into),
            pending_reads: record.pending_reads,
            problem: record.problem.as_deref().map(Into::into),
        }
    }
}

/// What the index holds, by key ([`FileRecord::key`]).
pub type KnownFiles = BTreeMap<String, Known>;

/// What the index holds of every file, read one record at a time.
pub fn known_files(store: &Store) -> Result<KnownFiles, crate::store::StoreError> {
    let mut known = KnownFiles::new();
    index::for_each(store, |record| {
        known.insert(record.key(), Known::from(&record));
    })?;
    Ok(known)
}

/// The path in the index key of a file of `origin` (its prefix is the
/// origin's id and a NUL, whatever the id holds).
fn path_in<'k>(origin: &str, key: &'k str) -> &'k str {
    key.get(origin.len() + 1..).unwrap_or_default()
}

/// What a walk below one folder found.
#[derive(Debug, Default)]
pub struct Subtree<'k> {
    /// Library files found unchanged: their keys and what the index holds.
    pub unchanged: Vec<(&'k str, &'k Known)>,
    /// Files kept as the index holds them because neither their origin nor
    /// the index could give their tags ([`TagRead::KeepIndexed`]; also in
    /// `unchanged`): the scan is not complete.
    pub kept: usize,
    /// Every other library file found and not given to `write` (see
    /// [`scan_subtree`]), sorted by path.
    pub records: Vec<FileRecord>,
    /// Folders that could not be listed (wholly or past some page), and why: the
    /// index keeps what it holds for them.
    pub unlisted: Vec<(String, String)>,
}

/// Records of every library file at or below `dir` on `origin`, reusing `known`
/// records of unchanged files and reading the tags of the others. Fails only when
/// `dir` itself cannot be listed; a folder below it that cannot be listed is
/// reported in [`Subtree::unlisted`].
///
/// One pipeline: up to [`InFlight::lists`] listing requests and
/// [`InFlight::tag_reads`] tag reads at once, a file's tags read as soon as its
/// folder is listed. Far away, a walk one folder at a time and tag reads after
/// it cost a round trip or more per folder and per file in a row; here they cost
/// about the round trips of the tree's depth and of the files divided by the
/// reads in flight.
///
/// `write` is given the new records whenever [`WRITE_EVERY`] have gathered,
/// and takes those it writes: the memory a walk holds is then a window, not
/// the library. Listing pauses while [`READ_QUEUE`] files wait for their tags.
#[allow(clippy::too_many_arguments)]
pub async fn scan_subtree<'k>(
    origin: &Arc<RegisteredOrigin>,
    cache: &Arc<ContentCache>,
    store: &Arc<Store>,
    known: &'k KnownFiles,
    progress: &Arc<ScanProgress>,
    dir: &str,
    write: &mut (dyn FnMut(&mut Vec<FileRecord>) + Send),
) -> OriginResult<Subtree<'k>> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let in_flight = InFlight::for_origin(origin);
    let mut subtree = Subtree::default();
    // Files whose tags are still to be read, and the reads under way.
    let mut to_read: Vec<FileRecord> = Vec::new();
    let mut reads = tokio::task::JoinSet::new();
    // Pages still to ask for (a folder and its next page's cursor), and those asked.
    let mut waiting: Vec<(String, Option<String>)> = vec![(dir.to_owned(), None)];
    let mut asked = FuturesUnordered::new();
    loop {
        while asked.len() < in_flight.lists && to_read.len() < READ_QUEUE {
            let Some((current, cursor)) = waiting.pop() else {
                break;
            };
            let origin = origin.clone();
            asked.push(async move {
                let page = origin.list(&current, cursor.as_deref(), PAGE).await;
                (current, cursor, page)
            });
        }
        while reads.len() < in_flight.tag_reads {
            let Some(record) = to_read.pop() else { break };
            spawn_tag_read(&mut reads, origin, cache, store, progress, known, record);
        }
        tokio::select! {
            Some((current, cursor, page)) = asked.next(), if !asked.is_empty() => {
                let page = match page {
                    Ok(page) => page,
                    Err(e) if current == dir && cursor.is_none() => return Err(e),
                    Err(e) => {
                        tracing::warn!(origin = %origin.id, dir = %current, "cannot list; keeping what the index holds below it: {e}");
                        subtree.unlisted.push((current, e.to_string()));
                        continue;
                    }
                };
                for entry in page.entries {
                    let path = origin_api::path::join(&current, &entry.name);
                    if entry.metadata.kind == EntryKind::Directory {
                        waiting.push((path, None));
                    } else if let Some(record) = library_file(&origin.id, path, &entry.metadata) {
                        progress.files.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(crate::telemetry::metric_names::SCAN_FILES).increment(1);
                        match sort_out(known, record) {
                            Found::Unchanged(key, same) => subtree.unchanged.push((key, same)),
                            Found::Ready(ready) => subtree.records.push(ready),
                            Found::ToRead(record) => to_read.push(record),
                        }
                    }
                }
                if let Some(next) = page.next_cursor {
                    waiting.push((current, Some(next)));
                }
            }
            Some(read) = reads.join_next(), if !reads.is_empty() => {
                match read {
                    Ok(Some(TagRead::Read(record))) => {
                        subtree.records.push(record);
                        if subtree.records.len() >= WRITE_EVERY {
                            write(&mut subtree.records);
                        }
                    }
                    Ok(Some(TagRead::KeepIndexed(key))) => {
                        if let Some((key, known)) = known.get_key_value(&key) {
                            subtree.unchanged.push((key, known));
                        }
                        subtree.kept += 1;
                    }
                    _ => {}
                }
            }
            else => break,
        }
    }
    subtree.records.sort_by(|a, b| a.path.cmp(&b.path));
    subtree.unlisted.sort();
    Ok(subtree)
}

/// Tag reads at once in the whole process, whatever the origins and scans:
/// each holds one of tokio's blocking threads (512 at most) while it waits
/// for bytes whose storing needs blocking threads too. Four far origins at
/// [`InFlight::FAR_TAG_READS`] each would take them all, and wait for ever.
static TAG_READS_AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(256);

/// How many requests a scan keeps in flight on one origin.
pub struct InFlight {
    /// Listing requests at once.
    pub lists: usize,
    /// Tag reads at once.
    pub tag_reads: usize,
}

impl InFlight {
    /// Tag reads for an origin as near as a disk: the reads are CPU (lofty), so
    /// a few more than the cores.
    pub const NEAR_TAG_READS: usize = 8;
    /// Tag reads for an origin far away: each waits a few round trips (SFTP:
    /// open, read, a version check) for a few tens of KiB, so the link is busy
    /// only with many at once. At 100 Mbit/s and 50 ms, 2,000 small tracks
    /// over SFTP took 6.3 s with 64 at once and 4.1 s with 128.
    pub const FAR_TAG_READS: usize = 128;
    /// Listings at once on an origin as near as a disk.
    pub const NEAR_LISTS: usize = 8;
    /// Listings at once on an origin far away: a listing over SFTP is three
    /// round trips (open, read, read to the end); the rescan of 100,000
    /// unchanged tracks in 5,500 folders 50 ms away took 28 s with 32 at once,
    /// 8.4 s with 128.
    pub const FAR_LISTS: usize = 128;
    /// The median call latency from which an origin counts as far away.
    pub const FAR: Duration = Duration::from_millis(2);

    /// For `origin`, from the latency of its calls so far (far away until known).
    pub fn for_origin(origin: &RegisteredOrigin) -> InFlight {
        let near = origin
            .health_snapshot()
            .p50
            .is_some_and(|p50| p50 < Self::FAR);
        if near {
            InFlight {
                lists: Self::NEAR_LISTS,
                tag_reads: Self::NEAR_TAG_READS,
            }
        } else {
            InFlight {
                lists: Self::FAR_LISTS,
                tag_reads: Self::FAR_TAG_READS,
            }
        }
    }
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
        version: meta.version.clone(),
        tags: Tags::default(),
        problem: None,
        pending_reads: 0,
        unseen: false,
    })
}

/// What a listed file's record needs.
pub enum Found<'k> {
    /// The file did not change (and its tags were read): the index's record
    /// (its key, and what the scan knows of it) stands. Not copied: at
    /// 100,000 tracks the copies were some 45 MB a scan (heaptrack).
    Unchanged(&'k str, &'k Known),
    /// New or changed, and nothing to read (a cover has no tags).
    Ready(FileRecord),
    /// New or changed: its tags must be read.
    ToRead(FileRecord),
}

/// Sorts out `record`, just listed, against the `known` records. A listing
/// without a version (an S3 server that lists no ETag, where a HEAD gives
/// one) says nothing of it: the known record, and its version, stand. An
/// mtime to the whole second is compared to the second: an index written
/// when the S3 plugin gave milliseconds is not read again whole.
pub fn sort_out(known: &KnownFiles, record: FileRecord) -> Found<'_> {
    match known.get_key_value(&record.key()) {
        Some((key, old))
            if old.size == record.size
                && same_mtime(old.mtime_ns, record.mtime_ns)
                && (record.version.is_none()
                    || old.version.as_deref() == record.version.as_deref())
                && old.pending_reads == 0 =>
        {
            Found::Unchanged(key, old)
        }
        _ if record.role == FileRole::Cover => Found::Ready(record),
        _ => Found::ToRead(record),
    }
}

/// Whether a file known with mtime `old` and listed with `new` is unchanged
/// by it: equal, or `new` is to the whole second and `old` in that second.
fn same_mtime(old: u64, new: u64) -> bool {
    const SECOND: u64 = 1_000_000_000;
    old == new || (new % SECOND == 0 && old / SECOND == new / SECOND)
}

/// Reads the tags of `records` through the content cache, as many at once as
/// [`InFlight::for_origin`] says.
///
/// A file lofty cannot parse is a bad file: it is recorded with its problem and
/// shown under fallback names. A read the origin failed (it went away, timed out)
/// says nothing about the file: the record keeps the tags `known` holds for it,
/// if any, and is marked to be read again ([`FileRecord::pending_reads`]); after
/// [`GIVE_UP`] failed reads in a row it counts as a bad file after all. A file
/// that is not found or not readable (permissions) is the file's problem.
pub async fn read_tags_of(
    origin: &Arc<RegisteredOrigin>,
    cache: &Arc<ContentCache>,
    store: &Arc<Store>,
    progress: &Arc<ScanProgress>,
    known: &KnownFiles,
    records: Vec<FileRecord>,
) -> (Vec<FileRecord>, Vec<String>) {
    let in_flight = InFlight::for_origin(origin);
    let mut reads = tokio::task::JoinSet::new();
    let mut done = Vec::with_capacity(records.len());
    let mut kept = Vec::new();
    let mut collect = |read: Option<Result<Option<TagRead>, _>>| match read {
        Some(Ok(Some(TagRead::Read(record)))) => done.push(record),
        Some(Ok(Some(TagRead::KeepIndexed(key)))) => kept.push(key),
        _ => {}
    };
    for record in records {
        // A few reads at a time, and only those few spawned: not a task
        // waiting for its turn for each new file of a whole library.
        while reads.len() >= in_flight.tag_reads {
            collect(reads.join_next().await);
        }
        spawn_tag_read(&mut reads, origin, cache, store, progress, known, record);
    }
    while !reads.is_empty() {
        collect(reads.join_next().await);
    }
    (done, kept)
}

/// What a tag read gives (moved once, from its task: not worth a box).
#[allow(clippy::large_enum_variant)]
pub enum TagRead {
    /// The record, with its tags or its problem.
    Read(FileRecord),
    /// The read failed with its origin, and the tags the index holds for the
    /// file could not be read either: the index's record stays as it is (by
    /// key), and the file is read again next time.
    KeepIndexed(String),
}

/// Starts reading the tags of `record` on `reads` (see [`read_tags_of`]).
fn spawn_tag_read(
    reads: &mut tokio::task::JoinSet<Option<TagRead>>,
    origin: &Arc<RegisteredOrigin>,
    cache: &Arc<ContentCache>,
    store: &Arc<Store>,
    progress: &Arc<ScanProgress>,
    known: &KnownFiles,
    mut record: FileRecord,
) {
    // Whether the index holds the file: its tags are read from there only if
    // this read fails with its origin.
    let held = known.contains_key(&record.key());
    let store = store.clone();
    let (origin, cache, progress) = (origin.clone(), cache.clone(), progress.clone());
    reads.spawn(async move {
        let _one_of_a_few = TAG_READS_AT_ONCE.acquire().await;
        let runtime = tokio::runtime::Handle::current();
        let read = tokio::task::spawn_blocking(move || {
            let version = crate::cache::manifest::FileVersion {
                origin: record.origin.clone(),
                path: record.path.clone(),
                size: record.size,
                mtime_ns: record.mtime_ns,
                version: record.version.clone(),
            };
            let mut outage: Option<OriginError> = None;
            let session = Session::open(&cache, std::slice::from_ref(&version));
            let (route, once) = (Route::Origin(&origin), ReadPolicy::once());
            let mut reader = RangeReader::new(record.size, |offset, len| {
                let read = session.fetch(route, &once, offset, len, len, Purpose::Tag, || {});
                runtime
                    .block_on(read)
                    .map(|(bytes, _)| bytes)
                    .map_err(|e| {
                        let io = std::io::Error::other(e.to_string());
                        if !is_file_problem(e.kind()) {
                            outage = Some(e);
                        }
                        io
                    })
            });
            let tags = reader.tags();
            progress
                .bytes_read
                .fetch_add(reader.fetched, Ordering::Relaxed);
            progress.tags_read.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::telemetry::metric_names::SCAN_TAGS_READ).increment(1);
            match (outage, tags) {
                (Some(e), _) => {
                    let previous = match held {
                        false => None,
                        true => match index::get(&store, &record.origin, &record.path) {
                            Ok(old) => old.map(|r| (r.tags, r.pending_reads, r.unseen)),
                            Err(failed) => {
                                tracing::warn!(path = %record.path, "tags not read, the origin failed ({e}), and the index cannot give the old ones ({failed}): keeping its record");
                                return TagRead::KeepIndexed(record.key());
                            }
                        },
                    };
                    let (tags, failed, unseen) = previous.unwrap_or((Tags::default(), 0, true));
                    record.tags = tags;
                    let attempts = failed + 1;
                    if attempts >= GIVE_UP {
                        // The origin answers other reads by now: it is this file.
                        record.problem =
                            Some(format!("tags could not be read in {attempts} tries: {e}"));
                    } else {
                        record.pending_reads = attempts;
                        record.unseen = unseen;
                        record.problem = Some(format!("tags not read yet, the origin failed: {e}"));
                    }
                }
                (None, Ok(tags)) => record.tags = tags,
                (None, Err(problem)) => record.problem = Some(problem),
            }
            TagRead::Read(record)
        })
        .await;
        read.ok()
    });
}

/// Whether an error reading a file is that file's problem (it is gone, or not
/// readable by us) rather than its origin's.
fn is_file_problem(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::NotFound | ErrorKind::PermissionDenied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: Option<&str>) -> FileRecord {
        FileRecord {
            mtime_ns: 1_000_000_000,
            version: version.map(Into::into),
            ..FileRecord::audio("bucket", "a/b.flac", 10)
        }
    }

    /// A file a watch found by HEAD (with its ETag) and a scan then listed
    /// from a server whose listings carry no ETag was read again (CI's tier
    /// test saw one tag read too many).
    #[test]
    fn a_listing_without_a_version_says_nothing_of_it() {
        let mut known = KnownFiles::new();
        let old = record(Some("\"etag-1\""));
        known.insert(old.key(), Known::from(&old));
        assert!(matches!(
            sort_out(&known, record(None)),
            Found::Unchanged(..)
        ));
        assert!(matches!(
            sort_out(&known, record(Some("\"etag-1\""))),
            Found::Unchanged(..)
        ));
        assert!(matches!(
            sort_out(&known, record(Some("\"etag-2\""))),
            Found::ToRead(_)
        ));
        let mut later = record(None);
        later.mtime_ns += 1_000_000_000;
        assert!(matches!(sort_out(&known, later), Found::ToRead(_)));
    }

    /// An index written when the S3 plugin gave listings' milliseconds is
    /// not read again whole now that it gives whole seconds.
    #[test]
    fn an_mtime_to_the_second_matches_one_to_the_millisecond_in_it() {
        let mut known = KnownFiles::new();
        let mut old = record(Some("\"etag-1\""));
        old.mtime_ns = 1_427_000_000;
        known.insert(old.key(), Known::from(&old));
        assert!(matches!(
            sort_out(&known, record(Some("\"etag-1\""))),
            Found::Unchanged(..)
        ));
        let mut other = record(Some("\"etag-1\""));
        other.mtime_ns = 1_500_000_000;
        assert!(
            matches!(sort_out(&known, other), Found::ToRead(_)),
            "sub-second precision both ways"
        );
    }
}
