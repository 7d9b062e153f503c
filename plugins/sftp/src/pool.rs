//! A pool of up to `connections` SSH connections, so concurrent readers do not
//! queue on one channel (each sshd connection is one process and one cipher
//! stream).
//!
//! Connections are opened on demand and spread round-robin; an empty or broken
//! slot is filled in the background while its callers use a live neighbour.
//! With no live connection, one attempt to connect runs at a time, in a task
//! of its own (a caller that gives up does not cancel it). The caller that
//! starts it waits for it; while it runs, others wait too the first time, but
//! once an attempt has failed they get that failure at once. After a failure
//! the next attempt waits [`FIRST_BACKOFF`], doubling to [`MAX_BACKOFF`]: a
//! server that went away makes reads fail fast (or fail over) and is not
//! dialled in a tight loop (servers ban that), and one that comes back is
//! used again without a remount.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use origin_api::{OriginError, OriginResult};
use tokio::time::Instant;

use crate::connection::Connection;
use crate::sftp_settings::SftpSettings;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

type Attempt = Shared<BoxFuture<'static, OriginResult<Arc<Connection>>>>;

#[derive(Default)]
struct Slot {
    live: Mutex<Option<Arc<Connection>>>,
    filling: AtomicBool,
}

impl Slot {
    fn usable(&self) -> Option<Arc<Connection>> {
        let mut live = lock(&self.live);
        match &*live {
            Some(c) if c.usable() => Some(c.clone()),
            Some(_) => {
                *live = None;
                None
            }
            None => None,
        }
    }
}

/// Where dialling stands.
#[derive(Default)]
struct Dialing {
    attempt: Option<Attempt>,
    last_failure: Option<OriginError>,
    /// No new attempt before this.
    retry_at: Option<Instant>,
    backoff: Duration,
}

struct Inner {
    settings: Arc<SftpSettings>,
    slots: Vec<Arc<Slot>>,
    next: AtomicUsize,
    dialing: Mutex<Dialing>,
}

pub(crate) struct Pool {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    pub(crate) fn new(settings: Arc<SftpSettings>) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                slots: (0..settings.connections.max(1))
                    .map(|_| Arc::default())
                    .collect(),
                settings,
                next: AtomicUsize::new(0),
                dialing: Mutex::default(),
            }),
        }
    }

    /// A live connection: the next slot's, a neighbour's while that slot is
    /// filled in the background, or a new one.
    pub(crate) async fn get(&self) -> OriginResult<Arc<Connection>> {
        let inner = &self.inner;
        let turn = inner.next.fetch_add(1, Ordering::Relaxed) % inner.slots.len();
        let slot = &inner.slots[turn];
        if let Some(connection) = slot.usable() {
            return Ok(connection);
        }
        if let Some(neighbour) = inner.any_usable() {
            inner.fill_in_background(slot.clone());
            return Ok(neighbour);
        }
        let attempt = {
            let mut dialing = lock(&inner.dialing);
            match (&dialing.attempt, &dialing.last_failure) {
                (Some(_), Some(failure)) => return Err(failure.clone()),
                (Some(attempt), None) => attempt.clone(),
                (None, Some(failure)) if dialing.retry_at.is_some_and(|at| Instant::now() < at) => {
                    return Err(failure.clone())
                }
                (None, _) => {
                    let attempt = inner.clone().dial(slot.clone());
                    dialing.attempt = Some(attempt.clone());
                    attempt
                }
            }
        };
        attempt.await
    }
}

impl Inner {
    fn any_usable(&self) -> Option<Arc<Connection>> {
        self.slots.iter().find_map(|slot| slot.usable())
    }

    /// Starts connecting for `slot` in a task of its own.
    fn dial(self: Arc<Self>, slot: Arc<Slot>) -> Attempt {
        let task = tokio::spawn(async move {
            let opened = Connection::open(&self.settings).await.map(Arc::new);
            self.record(&opened, &slot);
            lock(&self.dialing).attempt = None;
            opened
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(OriginError::other(format!("connecting failed: {e}"))))
        }
        .boxed()
        .shared()
    }

    /// Keeps what an attempt gave: the connection, or the failure and when to
    /// try again.
    fn record(&self, opened: &OriginResult<Arc<Connection>>, slot: &Slot) {
        let mut dialing = lock(&self.dialing);
        match opened {
            Ok(connection) => {
                *lock(&slot.live) = Some(connection.clone());
                dialing.last_failure = None;
                dialing.retry_at = None;
                dialing.backoff = Duration::ZERO;
            }
            Err(e) => {
                tracing::debug!("cannot connect to {}: {e}", self.settings.host);
                dialing.backoff = (dialing.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                dialing.retry_at = Some(Instant::now() + dialing.backoff);
                dialing.last_failure = Some(e.clone());
            }
        }
    }

    fn fill_in_background(self: &Arc<Self>, slot: Arc<Slot>) {
        if lock(&self.dialing)
            .retry_at
            .is_some_and(|at| Instant::now() < at)
        {
            return;
        }
        if slot.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            let opened = Connection::open(&inner.settings).await.map(Arc::new);
            inner.record(&opened, &slot);
            slot.filling.store(false, Ordering::Release);
        });
    }
}
