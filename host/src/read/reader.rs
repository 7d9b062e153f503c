//! Reading files, without FUSE in it: the open files, each pinned to the
//! version it opened, with its access pattern, read-ahead, failover, deadline
//! and the errno a failure becomes. `fs::fuse` is the thin adapter that hands
//! the kernel's requests here and its answers back.
//!
//! # How a read goes
//!
//! - **One version per open.** `open` records the replicas the file has then; its
//!   reads stay on them after the tree moves on, and every fetch asks the origin
//!   for that version. A file rewritten meanwhile fails the read (EIO) where its
//!   old bytes are not cached, and is shown anew once the change is seen.
//! - **Warm.** The cache is tried on the FUSE thread, for every replica: a read
//!   whose bytes are all cached never waits for anything else.
//! - **Cold.** The request moves to a tokio task with its reply. It opens one
//!   stream from its first missing byte to the next cached byte (or joins the
//!   stream already bringing its bytes) and is answered as soon as its own
//!   bytes are stored, while the stream goes on (see `cache::fill::ingest`). So the
//!   first byte waits for the first piece an origin sends, and a whole file
//!   read from its start is one request to the origin.
//! - **Windows.** How far a stream may run ahead of its reader: 1 MiB at first,
//!   doubling while the reader stays sequential (requests up to 1 MiB from
//!   where it should read next count, since the kernel's own readahead arrives
//!   out of order over several FUSE threads), up to 8 MiB, or 32 MiB for an
//!   origin whose streams are slow to start (a remote store). A seek starts
//!   again at 256 KiB, and a seek far ahead of a running stream cuts that
//!   stream short there and streams from its own offset (a sequential reader
//!   waits for the stream, however far ahead the kernel's read-ahead asks).
//! - **Requests.** A stream asks its origin for everything up to the next
//!   cached byte in one request, paced by the window; after a seek its first
//!   request asks only for the window (`Purpose::Seek`), so that a seek far
//!   away moves what it reads and not the plugin's pipeline's worth.
//! - **Read-ahead.** Every sequential read, cached or not, lets the stream ahead
//!   of it run on by the window, or starts one at the first byte that nobody
//!   has or is fetching; past the window the stream pauses, and after 5 s with
//!   nobody wanting more it ends.
//! - **Memory.** Bounded per stream by a few 1 MiB batches in the host and the
//!   plugin's 4 MiB credit, whatever the window; plus the shared 32 MiB of hot
//!   chunks.
//! - **Deadlines and cancellation.** A read has one deadline, twice `timeout_ms`,
//!   failover and retries included; past it the fetch's future is dropped, which
//!   cancels the plugin's task. A read that ran out its deadline is remembered for
//!   a second, so the kernel's immediate second try at the same pages fails at
//!   once. A stream is not cancelled when the file closes: it ends when nobody
//!   wants more, and what it brought is cached for the next reader.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use origin_api::{OriginError, OriginResult};

use crate::cache::content_cache::ContentCache;
use crate::cache::fill::{Purpose, MAX_WINDOW};
use crate::cache::source::Source;
use crate::origins::registry::{RegisteredOrigin, Registry};
use crate::origins::router;
use crate::read::failover::{with_failover, ReadPolicy};
use crate::telemetry::events::{Event, EventBus};
use crate::values::Replica;

/// The first fetch of an uncached range after an open; it doubles while the
/// reader stays sequential.
const FIRST_WINDOW: u32 = 1 << 20;
/// The window after a seek: a quarter of a MiB, a few seconds of any audio.
/// Far away, a seek costs this and a round trip, not a window. (Not the first
/// window too: a reader from the start that waits on a small window more
/// often makes more chunks cut where it waited rather than by content, and a
/// retagged track then shared a tenth less with its old version.)
const SEEK_WINDOW: u32 = 256 << 10;
/// How far from where a sequential reader should read next a read may land and
/// still count as sequential.
const REORDER_SLACK: u64 = 1 << 20;
/// The longest a read waits for the origins to open after mounting.
pub const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// How long a read that ran out its deadline makes an overlapping read of the same
/// open file fail at once.
const TIMED_OUT_MEMORY: Duration = Duration::from_secs(1);

/// The last read of an open file that ran out its deadline. Linux answers a
/// failed readahead by asking at once for the same pages again; without this
/// memory, a reader of a hung origin would wait out a second deadline.
#[derive(Default)]
struct RecentTimeout(Mutex<Option<(std::time::Instant, u64, u64)>>);

impl RecentTimeout {
    fn record(&self, start: u64, end: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), start, end));
    }

    fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether `[start, end)` overlaps a read that timed out just now.
    fn covers(&self, start: u64, end: u64) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|(at, s, e)| at.elapsed() < TIMED_OUT_MEMORY && start < e && s < end)
    }
}

/// Per open file: the version it opened, where a sequential reader will read
/// next, and its read-ahead.
struct OpenFile {
    /// The replicas (versions) the file had when opened. Reads stay on them after
    /// the tree moves on to a new version, so one open reads one version whole
    /// (or fails where its bytes are gone), never old bytes and then new ones.
    replicas: Arc<[Replica]>,
    next_offset: u64,
    window: u32,
    timed_out: Arc<RecentTimeout>,
}

/// How a read fits the file's access pattern.
struct Pattern {
    window: u32,
    sequential: bool,
    /// Far from where the reader was: its stream asks first for the window
    /// only (`Purpose::Seek`).
    seeked: bool,
    timed_out: Option<Arc<RecentTimeout>>,
}

/// Where a read's answer goes, once: its bytes, or why there are none (the
/// kernel's adapter makes that an errno).
pub type Answer = Box<dyn FnOnce(OriginResult<Vec<u8>>) + Send>;

/// The open files and everything a read needs.
pub struct Reader {
    cache: Arc<ContentCache>,
    registry: Arc<Registry>,
    events: EventBus,
    runtime: tokio::runtime::Handle,
    origins_started: tokio::sync::watch::Receiver<bool>,
    policy: ReadPolicy,
    open_files: Mutex<HashMap<u64, OpenFile>>,
    next_handle: AtomicU64,
}

impl Reader {
    /// A reader fetching through `cache` from the origins of `registry`, running
    /// slow reads on `runtime`.
    pub fn new(
        cache: Arc<ContentCache>,
        registry: Arc<Registry>,
        events: EventBus,
        runtime: tokio::runtime::Handle,
        origins_started: tokio::sync::watch::Receiver<bool>,
        policy: ReadPolicy,
    ) -> Self {
        Reader {
            cache,
            registry,
            events,
            runtime,
            origins_started,
            policy,
            open_files: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(first_handle()),
        }
    }

    /// Opens a file whose replicas are `replicas` now; returns its handle.
    ///
    /// Handles outlive the daemon that gave them: after a restart under the
    /// same mount (`mount::keeper`) the kernel still reads with the old ones. So
    /// each daemon numbers from where no earlier one can have reached (see
    /// [`first_handle`]), and a handle it does not know is read as the file
    /// its inode names.
    pub fn open(&self, replicas: &[Replica]) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.open_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                fh,
                OpenFile {
                    replicas: replicas.into(),
                    next_offset: 0,
                    window: FIRST_WINDOW,
                    timed_out: Arc::default(),
                },
            );
        fh
    }

    /// Forgets an open file; returns the replicas it had opened.
    pub fn release(&self, fh: u64) -> Option<Arc<[Replica]>> {
        self.open_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh)
            .map(|file| file.replicas)
    }

    /// Serves `size` bytes at `offset` of open file `fh` (or, for a handle it
    /// does not know, of a file with the replicas `unopened()` gives), named `path()` in
    /// events. A read whose bytes are cached is answered before this returns;
    /// any other from a task.
    pub fn read(
        &self,
        fh: u64,
        unopened: &dyn Fn() -> Option<Vec<Replica>>,
        path: &dyn Fn() -> String,
        offset: u64,
        size: u32,
        answer: Answer,
    ) {
        let opened = self
            .open_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .map(|f| f.replicas.clone());
        let replicas: Arc<[Replica]> = match opened.or_else(|| unopened().map(Into::into)) {
            Some(replicas) => replicas,
            None => return answer(Err(OriginError::not_found("no such open file"))),
        };
        let replicas = &replicas[..];
        let pattern = self.pattern(fh, offset, size);
        let window = pattern.window;
        let purpose = if pattern.seeked {
            Purpose::Seek
        } else {
            Purpose::Audio
        };
        for replica in replicas {
            if let Some(bytes) = self.cache.read_cached(replica, offset, size) {
                if pattern.sequential {
                    self.read_ahead(replicas, offset + size as u64, &pattern);
                }
                if self.events.is_listened() {
                    self.events.publish(Event::FileAccessed {
                        path: path(),
                        origin: replica.origin.clone(),
                        offset,
                        size,
                    });
                }
                return answer(Ok(bytes));
            }
        }
        let end = offset + size as u64;
        if let Some(timed_out) = &pattern.timed_out {
            if timed_out.covers(offset, end) {
                return answer(Err(OriginError::timeout(
                    "a read of these bytes ran out its deadline just now",
                )));
            }
        }
        let timed_out = pattern.timed_out.clone();
        // The read's own stream starts at its first missing byte (so the first
        // byte waits for the first piece an origin sends) and runs on by the
        // window: after a seek too, one request brings this read and what
        // follows it, instead of a second stream for the read-ahead.
        let replicas: Vec<Replica> = replicas.to_vec();
        let path = path();
        let (cache, registry, events) = (
            self.cache.clone(),
            self.registry.clone(),
            self.events.clone(),
        );
        let mut origins_started = self.origins_started.clone();
        let policy = self.policy.clone();
        self.runtime.spawn(async move {
            // Right after mounting, origins may still be opening: wait (bounded)
            // rather than fail a read that a moment later would succeed.
            let startup = origins_started.wait_for(|started| *started);
            let _ = tokio::time::timeout(STARTUP_WAIT, startup).await;
            let mut reported = false;
            let route = || {
                let route = router::route(&replicas, &registry);
                if !route.any_usable && !reported {
                    reported = true;
                    tracing::warn!(path = %path, "no healthy replica; trying the least bad");
                    events.publish(Event::AllOriginsUnhealthy { path: path.clone() });
                }
                (route.candidates, route.any_usable)
            };
            let attempt = |(replica, origin): (Replica, Arc<RegisteredOrigin>)| {
                let cache = cache.clone();
                async move {
                    let source: Arc<dyn Source> = origin;
                    let read = cache.read(&replica, Some(&source), offset, size, window, purpose).await;
                    if let Err(e) = &read {
                        tracing::debug!(origin = %replica.origin, path = %replica.path, "read failed: {e}");
                    }
                    read.map(|bytes| (bytes, replica.origin))
                }
            };
            let result = with_failover(route, attempt, &policy.retry_delays, policy.deadline).await;
            let error = match result {
                Ok((bytes, origin)) => {
                    if let Some(timed_out) = &timed_out {
                        timed_out.clear();
                    }
                    events.publish(Event::FileAccessed { path, origin, offset, size });
                    return answer(Ok(bytes));
                }
                Err(e) => e,
            };
            if error.kind() == origin_api::ErrorKind::Timeout {
                if let Some(timed_out) = &timed_out {
                    timed_out.record(offset, end);
                }
            }
            answer(Err(error));
        });
    }

    /// The read-ahead window for a read at `offset` on handle `fh`: it doubles while
    /// the reader stays sequential, and falls back after a seek.
    fn pattern(&self, fh: u64, offset: u64, size: u32) -> Pattern {
        let mut files = self.open_files.lock().unwrap_or_else(|p| p.into_inner());
        let Some(file) = files.get_mut(&fh) else {
            return Pattern {
                window: FIRST_WINDOW,
                sequential: false,
                seeked: true,
                timed_out: None,
            };
        };
        let end = offset + size as u64;
        // The kernel's own read-ahead, spread over several FUSE threads, delivers a
        // sequential reader's requests slightly out of order: near counts as next.
        let near = offset.abs_diff(file.next_offset) <= REORDER_SLACK;
        let sequential = near && offset != 0;
        if sequential {
            file.window = (file.window.saturating_mul(2)).min(MAX_WINDOW);
            file.next_offset = file.next_offset.max(end);
        } else {
            if !near {
                file.window = SEEK_WINDOW;
            }
            file.next_offset = end;
        }
        Pattern {
            window: file.window,
            sequential,
            seeked: !near,
            timed_out: Some(file.timed_out.clone()),
        }
    }

    /// Keeps a stream running ahead of a sequential reader at `next`, by its
    /// window, so a remote origin's latency overlaps playback: the streams
    /// already bringing those bytes run on, or one starts at the first byte
    /// that nobody has or is fetching, on the replica the router prefers.
    fn read_ahead(&self, replicas: &[Replica], next: u64, pattern: &Pattern) {
        if pattern.timed_out.is_none() || next >= replicas[0].size {
            return;
        }
        let until = next.saturating_add(pattern.window as u64);
        for replica in replicas {
            if self.cache.want(replica, next, until) {
                return;
            }
        }
        let route = router::route(replicas, &self.registry);
        let Some((replica, origin)) = route.candidates.into_iter().next() else {
            return;
        };
        if let Some(stream) = self.cache.stream_ahead(&replica, next, until) {
            let source: Arc<dyn Source> = origin;
            self.runtime.spawn(async move {
                if let Err(e) = stream.run(source).await {
                    tracing::debug!(origin = %replica.origin, path = %replica.path, "read-ahead failed: {e}");
                }
            });
        }
    }
}

/// The first file handle of this daemon: the time in microseconds, times
/// 2^20. An earlier daemon reached this only by opening more than 2^20 files
/// a microsecond; the numbers wrap after about twelve days (2^40 µs).
fn first_handle() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    ((micros & ((1 << 40) - 1)) << 20).max(1)
}
