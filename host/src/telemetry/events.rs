//! The event bus: what happens in the host, for `musicfs events`, the status view and
//! tests. A broadcast channel, so a slow listener loses old events instead of
//! slowing the host down.

use serde::Serialize;
use tokio::sync::broadcast;

/// Something that happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event")]
pub enum Event {
    /// A plugin library loaded and its constructor succeeded.
    PluginLoaded {
        file: String,
        kind: String,
        version: String,
        hash: String,
    },
    /// A plugin was taken down (its file removed or replaced).
    PluginUnloaded { file: String, kind: String },
    /// A file in the plugins folder was not loaded.
    PluginRejected { file: String, reason: String },
    /// An origin was opened and registered.
    OriginRegistered { id: String, kind: String },
    /// An origin was taken down.
    OriginUnregistered { id: String, kind: String },
    /// A configured origin could not be opened, or waits for its plugin.
    OriginWaiting { id: String, reason: String },
    /// An origin's health changed (logged once per change).
    OriginHealthChanged {
        id: String,
        from: String,
        to: String,
        reason: String,
    },
    /// A read found no healthy or degraded replica and fell back to the least bad.
    AllOriginsUnhealthy { path: String },
    /// A watched change on an origin reached the library.
    FileChanged {
        origin: String,
        path: String,
        change: String,
    },
    /// The mount shows a tree rebuilt from the index (after a scan or a batch of
    /// changes), with this many files.
    LibraryUpdated { files: usize },
    /// A read through the mount: which file, served for which origin, which range.
    FileAccessed {
        path: String,
        origin: String,
        offset: u64,
        size: u32,
    },
}

/// A cheap handle to the bus.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            sender: broadcast::channel(1024).0,
        }
    }
}

impl EventBus {
    /// Publishes `event` to every current subscriber.
    pub fn publish(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    /// Whether anyone listens (so that hot paths can skip building events).
    pub fn is_listened(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
