//! An origin served by a plugin process, as the host's `dyn Origin`.
//!
//! It outlives the process: after a restart, its first call (or the
//! supervisor, at once) opens it again in the new process and starts its
//! watches again. Changes made while no process watched are not known, so
//! each watch is then told that the whole origin may have changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use origin_api::{
    ChangeEvent, ChangeKind, EventSink, Health, ListPage, Metadata, Origin, OriginError,
    OriginResult, PollStats, ReadStream, WatchHandle,
};

use super::connection::{Connection, STREAM_CREDIT};
use super::supervisor::PluginProcess;
use super::wire::{self, ToChild, ToHost};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct WatchEntry {
    sink: EventSink,
    /// The watch in the process that runs it, if one does.
    remote: Option<(Weak<Connection>, u64)>,
}

/// What an origin keeps across restarts of its process.
pub struct RemoteState {
    origin_id: String,
    settings: String,
    /// The process generation it is open in, and its number there.
    opened: Mutex<Option<(u64, u64)>>,
    opening: tokio::sync::Mutex<()>,
    watches: Mutex<HashMap<u64, WatchEntry>>,
    next_watch: AtomicU64,
}

impl RemoteState {
    pub fn new(origin_id: String, settings: String) -> Self {
        RemoteState {
            origin_id,
            settings,
            opened: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            watches: Mutex::default(),
            next_watch: AtomicU64::new(1),
        }
    }

    pub fn origin_id(&self) -> &str {
        &self.origin_id
    }

    fn open_in(&self, conn: &Connection) -> Option<u64> {
        match *lock(&self.opened) {
            Some((generation, origin)) if generation == conn.generation => Some(origin),
            _ => None,
        }
    }

    /// The running process and this origin's number in it, opening it there
    /// first if this process has not opened it yet.
    pub async fn session(&self, process: &PluginProcess) -> OriginResult<(Arc<Connection>, u64)> {
        let conn = process.connection()?;
        if let Some(origin) = self.open_in(&conn) {
            return Ok((conn, origin));
        }
        let _one_at_a_time = self.opening.lock().await;
        if let Some(origin) = self.open_in(&conn) {
            return Ok((conn, origin));
        }
        let reopening = lock(&self.opened).is_some();
        let (origin_id, settings) = (self.origin_id.clone(), self.settings.clone());
        let answer = conn
            .call(move |call| ToChild::Open {
                call,
                origin_id,
                settings,
            })
            .await?;
        let ToHost::Opened { origin, .. } = answer.0 else {
            return Err(unexpected(&answer.0));
        };
        *lock(&self.opened) = Some((conn.generation, origin));
        if reopening {
            self.watch_again(&conn, origin).await;
        }
        Ok((conn, origin))
    }

    /// After a restart: starts every watch again in the new process, and tells
    /// each that anything may have changed meanwhile.
    async fn watch_again(&self, conn: &Arc<Connection>, origin: u64) {
        // Watches that ran in the last process; one still starting (no
        // remote yet) starts in this one by itself.
        let entries: Vec<(u64, EventSink)> = lock(&self.watches)
            .iter()
            .filter(|(_, w)| w.remote.is_some())
            .map(|(id, w)| (*id, w.sink.clone()))
            .collect();
        for (id, sink) in entries {
            match conn.watch(origin, sink.clone()).await {
                Ok(call) => {
                    let mut watches = lock(&self.watches);
                    match watches.get_mut(&id) {
                        Some(entry) => entry.remote = Some((Arc::downgrade(conn), call)),
                        // Stopped meanwhile.
                        None => conn.cancel(call),
                    }
                }
                Err(e) => {
                    tracing::warn!(origin = %self.origin_id, "cannot watch again after the restart: {e}")
                }
            }
            sink.send(ChangeEvent::new(ChangeKind::Modified, ""));
        }
    }
}

/// An origin whose plugin runs in a process of its own.
pub struct RemoteOrigin {
    process: Arc<PluginProcess>,
    state: Arc<RemoteState>,
}

impl RemoteOrigin {
    pub fn new(process: Arc<PluginProcess>, state: Arc<RemoteState>) -> Self {
        RemoteOrigin { process, state }
    }

    async fn call(
        &self,
        frame: impl FnOnce(u64, u64) -> ToChild + Send,
    ) -> OriginResult<(ToHost, Vec<u8>)> {
        let (conn, origin) = self.state.session(&self.process).await?;
        conn.call(|call| frame(call, origin)).await
    }
}

impl Drop for RemoteOrigin {
    fn drop(&mut self) {
        if let (Ok(conn), Some((generation, origin))) =
            (self.process.connection(), *lock(&self.state.opened))
        {
            if conn.generation == generation {
                conn.close_origin(origin);
            }
        }
    }
}

fn unexpected(answer: &ToHost) -> OriginError {
    OriginError::other(format!("plugin process answered {answer:?}"))
}

#[async_trait]
impl Origin for RemoteOrigin {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        let path = path.to_owned();
        match self
            .call(|call, origin| ToChild::Stat { call, origin, path })
            .await?
        {
            (ToHost::Metadata { meta, .. }, _) => Ok(meta.into()),
            (other, _) => Err(unexpected(&other)),
        }
    }

    async fn list(&self, dir: &str, cursor: Option<&str>, limit: u32) -> OriginResult<ListPage> {
        let (dir, cursor) = (dir.to_owned(), cursor.map(str::to_owned));
        match self
            .call(|call, origin| ToChild::List {
                call,
                origin,
                dir,
                cursor,
                limit,
            })
            .await?
        {
            (
                ToHost::Page {
                    entries,
                    next_cursor,
                    ..
                },
                _,
            ) => Ok(wire::page_from_wire(entries, next_cursor)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    async fn read(&self, path: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        self.read_version(path, offset, len, None).await
    }

    async fn read_version(
        &self,
        path: &str,
        offset: u64,
        len: u32,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>> {
        let (path, expected) = (path.to_owned(), expected.map(str::to_owned));
        match self
            .call(|call, origin| ToChild::Read {
                call,
                origin,
                path,
                offset,
                len,
                expected,
            })
            .await?
        {
            (ToHost::Bytes { .. }, bytes) => Ok(bytes),
            (other, _) => Err(unexpected(&other)),
        }
    }

    fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        let (path, expected) = (path.to_owned(), expected.map(str::to_owned));
        ReadStream::opened_by(async move {
            let (conn, origin) = self.state.session(&self.process).await?;
            Ok(ReadStream::of_pieces(conn.stream(|call| ToChild::Stream {
                call,
                origin,
                path,
                offset,
                len,
                expected,
                credit: STREAM_CREDIT,
            })))
        })
    }

    async fn health(&self) -> Health {
        match self
            .call(|call, origin| ToChild::Health { call, origin })
            .await
        {
            Ok((ToHost::Health { status, reason, .. }, _)) => {
                wire::health_from_wire(status, reason)
            }
            Ok((other, _)) => Health::unhealthy(unexpected(&other).to_string()),
            Err(e) => Health::unhealthy(e.to_string()),
        }
    }

    async fn watch(&self, sink: EventSink) -> OriginResult<WatchHandle> {
        let id = self.state.next_watch.fetch_add(1, Ordering::Relaxed);
        lock(&self.state.watches).insert(
            id,
            WatchEntry {
                sink: sink.clone(),
                remote: None,
            },
        );
        let started = async {
            let (conn, origin) = self.state.session(&self.process).await?;
            let call = conn.watch(origin, sink).await?;
            OriginResult::Ok((conn, call))
        }
        .await;
        match started {
            Ok((conn, call)) => {
                if let Some(entry) = lock(&self.state.watches).get_mut(&id) {
                    entry.remote = Some((Arc::downgrade(&conn), call));
                }
                let state = Arc::downgrade(&self.state);
                Ok(WatchHandle::on_stop(move || {
                    let Some(state) = state.upgrade() else { return };
                    let entry = lock(&state.watches).remove(&id);
                    if let Some((conn, call)) = entry.and_then(|e| e.remote) {
                        if let Some(conn) = conn.upgrade() {
                            conn.cancel(call);
                        }
                    }
                }))
            }
            Err(e) => {
                lock(&self.state.watches).remove(&id);
                Err(e)
            }
        }
    }

    fn watch_stats(&self) -> Option<PollStats> {
        let conn = self.process.connection().ok()?;
        let origin = self.state.open_in(&conn)?;
        conn.stats_of(origin)
    }
}
