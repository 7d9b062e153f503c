//! Reading files, without FUSE in it: the open files, each a session
//! (`super::session`) pinned to the version it opened, with its access
//! pattern, read-ahead, failover and deadline. `fs::fuse` is the thin adapter
//! that hands the kernel's requests here and its answers back (and makes a
//! failure an errno).
//!
//! # How a read goes
//!
//! - **One version per open.** `open` records the replicas the file has then; its
//!   reads stay on them after the tree moves on, and every fetch asks the origin
//!   for that version. A file rewritten meanwhile fails the read (EIO) where its
//!   old bytes are not cached, and is shown anew once the change is seen.
//! - **Warm.** The cache is tried on the FUSE thread, for every replica: a read
//!   whose bytes are all cached never waits for anything else. The session
//!   holds each replica's state in the cache, so a warm read builds no key and
//!   looks nothing up by one: the handle is an index into the open files.
//! - **Cold.** The request moves to a tokio task with its reply. It opens one
//!   stream from its first missing byte to the next cached byte (or joins the
//!   stream already bringing its bytes) and is answered as soon as its own
//!   bytes have arrived, while they are cut, named and stored behind it and
//!   the stream goes on (see `cache::fill::ingest` and `cache::fill::landing`).
//!   So the first byte waits for the first piece an origin sends, and a whole
//!   file read from its start is one request to the origin. A pin's fetch of
//!   a file is done once its streams have stored what they brought.
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
//! - **Memory.** Bounded per stream by a few batches of about 1 MiB and the
//!   piece being handed over (up to 8 MiB) in the host, and the plugin's 4 MiB
//!   credit, whatever the window; plus the shared 32 MiB of hot chunks (read
//!   from disk and verified).
//! - **Deadlines and cancellation.** A read has one deadline, twice `timeout_ms`,
//!   failover and retries included; past it the fetch's future is dropped, which
//!   cancels the plugin's task. A read that ran out its deadline is remembered for
//!   a second, so the kernel's immediate second try at the same pages fails at
//!   once. A stream is not cancelled when the file closes: it ends when nobody
//!   wants more, and what it brought is cached for the next reader.

use std::sync::Arc;
use std::time::Duration;

use origin_api::{OriginError, OriginResult};

use super::failover::ReadPolicy;
use super::open_files::OpenFiles;
use super::session::{Route, Session};
use crate::cache::content_cache::ContentCache;
use crate::cache::fill::Purpose;
use crate::origins::registry::Registry;
use crate::telemetry::events::{Event, EventBus};
use crate::values::Replica;

/// The longest a read waits for the origins to open after mounting.
pub const STARTUP_WAIT: Duration = Duration::from_secs(10);

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
    open_files: OpenFiles,
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
            open_files: OpenFiles::default(),
        }
    }

    /// Opens a file whose replicas are `replicas` now; returns its handle
    /// (see `super::open_files` for handles that outlive a daemon).
    pub fn open(&self, replicas: &[Replica]) -> u64 {
        self.open_files
            .insert(Arc::new(Session::open(&self.cache, replicas)))
    }

    /// Forgets an open file; returns its session.
    pub fn release(&self, fh: u64) -> Option<Arc<Session>> {
        self.open_files.remove(fh)
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
        let session = self
            .open_files
            .adopt(fh, || Some(Session::open(&self.cache, &unopened()?)));
        let Some(session) = session else {
            return answer(Err(OriginError::not_found("no such open file")));
        };
        let step = session.observe(offset, size);
        if let Some((bytes, replica)) = session.read_cached(offset, size) {
            if step.sequential {
                session.read_ahead(
                    &self.registry,
                    &self.runtime,
                    offset + size as u64,
                    step.window,
                );
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
        let end = offset + size as u64;
        if session.timed_out().covers(offset, end) {
            return answer(Err(OriginError::timeout(
                "a read of these bytes ran out its deadline just now",
            )));
        }
        // The read's own stream starts at its first missing byte (so the first
        // byte waits for the first piece an origin sends) and runs on by the
        // window: after a seek too, one request brings this read and what
        // follows it, instead of a second stream for the read-ahead.
        let purpose = if step.seeked {
            Purpose::Seek
        } else {
            Purpose::Audio
        };
        let path = path();
        let (registry, events) = (self.registry.clone(), self.events.clone());
        let mut origins_started = self.origins_started.clone();
        let policy = self.policy.clone();
        self.runtime.spawn(async move {
            // Right after mounting, origins may still be opening: wait (bounded)
            // rather than fail a read that a moment later would succeed.
            let startup = origins_started.wait_for(|started| *started);
            let _ = tokio::time::timeout(STARTUP_WAIT, startup).await;
            let mut reported = false;
            let none_usable = || {
                if !reported {
                    reported = true;
                    tracing::warn!(path = %path, "no healthy replica; trying the least bad");
                    events.publish(Event::AllOriginsUnhealthy { path: path.clone() });
                }
            };
            let route = Route::Replicas(&registry);
            let fetched = session
                .fetch(
                    route,
                    &policy,
                    offset,
                    size,
                    step.window,
                    purpose,
                    none_usable,
                )
                .await;
            match fetched {
                Ok((bytes, replica)) => {
                    session.timed_out().clear();
                    let origin = replica.origin.clone();
                    events.publish(Event::FileAccessed {
                        path,
                        origin,
                        offset,
                        size,
                    });
                    answer(Ok(bytes));
                }
                Err(error) => {
                    if error.kind() == origin_api::ErrorKind::Timeout {
                        session.timed_out().record(offset, end);
                    }
                    answer(Err(error));
                }
            }
        });
    }
}
