//! A pool of up to `connections` SSH connections, so concurrent readers do not
//! queue on one channel (each sshd connection is one process and one cipher
//! stream).
//!
//! Connections are opened on demand: the first caller connects (with the
//! deadline, one attempt at a time); later callers spread over the slots
//! round-robin, and an empty or broken slot is filled in the background while
//! its callers use a live neighbour. With no live connection at all, a failed
//! attempt is remembered for [`RETRY_AFTER`], and callers meanwhile fail at
//! once with its error: a server that went away makes reads fail fast (or fail
//! over), never hang, and comes back without a remount.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use origin_api::{OriginError, OriginResult};

use crate::connection::Connection;
use crate::sftp_settings::SftpSettings;

/// How long a failed connection attempt answers for the server.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Slot {
    live: Mutex<Option<Arc<Connection>>>,
    filling: AtomicBool,
}

impl Slot {
    fn usable(&self) -> Option<Arc<Connection>> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match &*live {
            Some(c) if c.usable() => Some(c.clone()),
            Some(_) => {
                *live = None;
                None
            }
            None => None,
        }
    }

    fn set(&self, connection: Arc<Connection>) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(connection);
    }
}

pub(crate) struct Pool {
    settings: Arc<SftpSettings>,
    slots: Vec<Arc<Slot>>,
    next: AtomicUsize,
    last_failure: Mutex<Option<(Instant, OriginError)>>,
    /// Held while connecting with no live connection: one attempt at a time.
    connecting: tokio::sync::Mutex<()>,
}

impl Pool {
    pub(crate) fn new(settings: Arc<SftpSettings>) -> Pool {
        Pool {
            slots: (0..settings.connections.max(1))
                .map(|_| Arc::default())
                .collect(),
            settings,
            next: AtomicUsize::new(0),
            last_failure: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// A live connection: the next slot's, a neighbour's while that slot is
    /// filled in the background, or a new one.
    pub(crate) async fn get(&self) -> OriginResult<Arc<Connection>> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[turn];
        if let Some(connection) = slot.usable() {
            return Ok(connection);
        }
        if let Some(neighbour) = self.any_usable() {
            self.fill_in_background(slot.clone());
            return Ok(neighbour);
        }
        self.recent_failure()?;
        let _one_at_a_time = self.connecting.lock().await;
        // Someone else may have connected (or failed) while this one waited.
        if let Some(connection) = self.any_usable() {
            return Ok(connection);
        }
        self.recent_failure()?;
        match Connection::open(&self.settings).await {
            Ok(connection) => {
                let connection = Arc::new(connection);
                slot.set(connection.clone());
                *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(connection)
            }
            Err(e) => {
                tracing::debug!("cannot connect to {}: {e}", self.settings.host);
                *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    fn any_usable(&self) -> Option<Arc<Connection>> {
        self.slots.iter().find_map(|slot| slot.usable())
    }

    fn recent_failure(&self) -> OriginResult<()> {
        match &*self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, error)) if at.elapsed() < RETRY_AFTER => Err(error.clone()),
            _ => Ok(()),
        }
    }

    fn fill_in_background(&self, slot: Arc<Slot>) {
        if slot.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let settings = self.settings.clone();
        tokio::spawn(async move {
            match Connection::open(&settings).await {
                Ok(connection) => slot.set(Arc::new(connection)),
                Err(e) => tracing::debug!("another connection to {}: {e}", settings.host),
            }
            slot.filling.store(false, Ordering::Release);
        });
    }
}
