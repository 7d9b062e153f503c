//! The state of each file version in use: what of it is cached (its manifest
//! in memory), what is held only in memory, and the fetches running for it.
//! One state a version, shared by every reader of it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use super::chunker::ChunkId;
use super::fill::in_flight::InFlight;
use super::fill::landing::Landing;
use super::manifest::Manifest;

/// Version states kept before idle ones are dropped (see [`Versions`]).
pub(in crate::cache) const IDLE_VERSIONS: usize = 1024;

pub struct VersionState {
    pub(in crate::cache) key: String,
    /// What is cached, in memory: the chunks on disk, plus [`Self::volatile`].
    pub(in crate::cache) manifest: Mutex<Manifest>,
    /// Chunks in the manifest that could not be written (a full disk): served
    /// from memory while they last, never recorded on disk or counted as cached.
    pub(in crate::cache) volatile: Mutex<HashSet<ChunkId>>,
    /// When writing [`Self::volatile`] chunks was last tried.
    pub(in crate::cache) volatile_tried: Mutex<Option<Instant>>,
    pub(in crate::cache) in_flight: Arc<InFlight>,
    /// Whether the last fetch of this version was slow to start (see
    /// [`super::fill::SLOW_FETCH`]).
    pub(in crate::cache) slow_origin: AtomicBool,
    /// Bytes its streams have received and not yet stored (see
    /// `super::fill::landing`). Taken after the manifest's lock, never before.
    pub(in crate::cache) landing: Mutex<Landing>,
    /// Bumped whenever bytes arrive or are added to the manifest: readers
    /// waiting for a running fetch look again.
    pub(in crate::cache) landed: watch::Sender<u64>,
}

impl VersionState {
    /// Held by nobody but the map of versions, fetching nothing, and with
    /// nothing kept only in memory: dropping it loses nothing.
    pub(in crate::cache) fn is_idle(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1
            && Arc::strong_count(&self.in_flight) == 1
            // Taken only if free: the map's lock comes before no other.
            && self.volatile.try_lock().is_ok_and(|v| v.is_empty())
    }

    /// The manifest without the chunks only held in memory: what is on disk.
    pub(in crate::cache) fn on_disk(&self) -> Manifest {
        let mut manifest = self
            .manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for id in self
            .volatile
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            manifest.remove_chunk(id);
        }
        manifest
    }
}

/// The state of every version in use, by key.
///
/// A state is only a cache of the version's manifest in the store plus what
/// is happening to it now, so one nobody holds, with no fetch running and
/// nothing held only in memory, can go and be read again when needed. Without
/// that, a scan that reads the tags of 100,000 files kept 100,000 states
/// (about 160 MB in heaptrack). Idle states are dropped whenever the map has doubled since
/// the last sweep, so the cost of sweeping stays a constant per state made.
#[derive(Default)]
pub(in crate::cache) struct Versions {
    pub(in crate::cache) map: HashMap<String, Arc<VersionState>>,
    sweep_at: usize,
}

impl Versions {
    /// The state for `key`: the one there, else `fresh`.
    pub(in crate::cache) fn insert(
        &mut self,
        key: String,
        fresh: Arc<VersionState>,
    ) -> Arc<VersionState> {
        if self.map.len() >= self.sweep_at.max(IDLE_VERSIONS) {
            self.map.retain(|_, state| !state.is_idle());
            self.sweep_at = 2 * self.map.len();
        }
        self.map.entry(key).or_insert(fresh).clone()
    }
}
