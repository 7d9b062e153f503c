//! Change notifications: an origin pushes [`ChangeEvent`]s into an [`EventSink`] until
//! the [`WatchHandle`] it returned is stopped or dropped.
//!
//! The promise "no event after the handle is stopped" is kept by the sink itself, not
//! left to each plugin: closing a sink waits for a delivery in progress and makes every
//! later `send` a no-op. The plugin-side adapter closes the sink when the host stops
//! the handle, and the host closes its own sink when it unregisters an origin, so even
//! a plugin that forgets to stop its watcher cannot deliver late events.

use std::fmt;
use std::sync::{Arc, Mutex};

/// What happened to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The path appeared.
    Created,
    /// The path's content or metadata changed.
    Modified,
    /// The path disappeared.
    Removed,
}

/// One change on an origin, with the path relative to the origin's root.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChangeEvent {
    /// What happened.
    pub kind: ChangeKind,
    /// The relative path (`Artist/Album/01.flac`).
    pub path: String,
}

impl ChangeEvent {
    /// An event of `kind` on `path`.
    pub fn new(kind: ChangeKind, path: impl Into<String>) -> Self {
        ChangeEvent {
            kind,
            path: path.into(),
        }
    }
}

type Deliver = Box<dyn Fn(ChangeEvent) + Send + Sync>;

struct SinkInner {
    /// `Some` while open. Held during delivery so that `close` waits for it.
    deliver: Mutex<Option<Deliver>>,
}

/// Where an origin sends its change events. Cheap to clone; every clone shares the
/// same open/closed state.
#[derive(Clone)]
pub struct EventSink {
    inner: Arc<SinkInner>,
}

impl EventSink {
    /// A sink that hands each event to `deliver` until it is closed.
    pub fn new(deliver: impl Fn(ChangeEvent) + Send + Sync + 'static) -> Self {
        EventSink {
            inner: Arc::new(SinkInner {
                deliver: Mutex::new(Some(Box::new(deliver))),
            }),
        }
    }

    /// Delivers `event`; returns `false` (and drops the event) once the sink is closed.
    pub fn send(&self, event: ChangeEvent) -> bool {
        let guard = self
            .inner
            .deliver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match guard.as_ref() {
            Some(deliver) => {
                deliver(event);
                true
            }
            None => false,
        }
    }

    /// Closes the sink: waits for a delivery in progress, then drops the receiver.
    /// Every later `send` returns `false`.
    pub fn close(&self) {
        let taken = self
            .inner
            .deliver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(taken);
    }

    /// Whether the sink has been closed.
    pub fn is_closed(&self) -> bool {
        self.inner
            .deliver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_none()
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSink")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// What an origin that watches by polling its listing has done so far (see
/// `poller`), for the host's metrics. Since 1.6.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Polls finished (the baseline listing included), and of those failed.
    pub polls: u64,
    /// Polls whose listing failed.
    pub failed: u64,
    /// Listing requests made by every poll.
    pub requests: u64,
    /// Bytes of names and version tokens every poll listed: what the
    /// listings carried, without the protocol's framing.
    pub bytes: u64,
    /// The last finished poll: its listing requests, bytes, files, and how
    /// long it took in milliseconds.
    pub last_requests: u64,
    /// See [`Self::last_requests`].
    pub last_bytes: u64,
    /// See [`Self::last_requests`].
    pub last_files: u64,
    /// See [`Self::last_requests`].
    pub last_millis: u64,
}

/// Keeps a watch running. Stopping or dropping it stops the watch.
pub struct WatchHandle {
    on_stop: Option<Box<dyn FnOnce() + Send>>,
}

impl WatchHandle {
    /// A handle that runs `on_stop` once, when stopped or dropped.
    pub fn on_stop(on_stop: impl FnOnce() + Send + 'static) -> Self {
        WatchHandle {
            on_stop: Some(Box::new(on_stop)),
        }
    }

    /// A handle that keeps `guard` alive (a watcher, a task's abort handle) and drops
    /// it when stopped.
    pub fn holding(guard: impl Send + 'static) -> Self {
        Self::on_stop(move || drop(guard))
    }

    /// Stops the watch now.
    pub fn stop(mut self) {
        self.run_stop();
    }

    fn run_stop(&mut self) {
        if let Some(on_stop) = self.on_stop.take() {
            on_stop();
        }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.run_stop();
    }
}

impl fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchHandle")
            .field("running", &self.on_stop.is_some())
            .finish()
    }
}
