//! The registry of live origins: each configured origin that its plugin opened, with
//! its priority, its watch handles and its calls in flight.
//!
//! Every call to an origin goes through [`RegisteredOrigin`], which enforces the
//! per-call deadline (dropping the future, which aborts the plugin's task) and counts
//! the call, so that unregistering can stop the watches, wait (bounded) for calls in
//! flight and only then drop the plugin's origin object.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use origin_api::{
    ChangeEvent, EventSink, Health, HealthStatus, ListPage, Metadata, Origin, OriginError,
    OriginResult, ReadStream, WatchHandle,
};

use metrics::{counter, histogram};

use crate::origins::call_gate::{CallGate, CallGuard};
use crate::origins::health::{HealthSnapshot, OriginHealth, Transition};
use crate::telemetry::events::{Event, EventBus};
use crate::telemetry::metric_names as names;

/// How long unregistering waits for calls in flight.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// One live origin.
pub struct RegisteredOrigin {
    /// The configured id.
    pub id: String,
    /// The plugin kind.
    pub kind: String,
    /// Lower wins.
    pub priority: i64,
    /// The version of the plugin that opened it.
    pub plugin_version: String,
    /// The content hash of the plugin library that opened it.
    pub plugin_hash: String,
    origin: Arc<dyn Origin>,
    deadline: Duration,
    gate: Arc<CallGate>,
    watches: Mutex<Vec<(EventSink, WatchHandle)>>,
    health: OriginHealth,
    /// Where health transitions are published (the registry's bus once registered).
    events: EventBus,
    /// Unique per registration: a re-registered origin is a new one to watch.
    pub serial: u64,
}

impl RegisteredOrigin {
    /// Wraps an opened origin.
    pub fn new(
        id: String,
        kind: String,
        priority: i64,
        plugin_version: String,
        plugin_hash: String,
        origin: Arc<dyn Origin>,
        deadline: Duration,
    ) -> Self {
        RegisteredOrigin {
            id,
            kind,
            priority,
            plugin_version,
            plugin_hash,
            origin,
            deadline,
            gate: Arc::new(CallGate::default()),
            watches: Mutex::new(Vec::new()),
            health: OriginHealth::new(1),
            events: EventBus::default(),
            serial: 0,
        }
    }

    /// Consecutive failures before this origin counts as unhealthy.
    pub fn with_unhealthy_threshold(mut self, threshold: u32) -> Self {
        self.health = OriginHealth::new(threshold);
        self
    }

    /// Marks the origin unhealthy at once (it failed its check when opened).
    pub fn start_unhealthy(&self, reason: &str) {
        self.health.set_unhealthy(reason);
    }

    /// Status, reason, consecutive failures and p50 latency.
    pub fn health_snapshot(&self) -> HealthSnapshot {
        self.health.snapshot()
    }

    /// What the origin's watch has polled, if it watches by polling (a read
    /// of the plugin's counters: no I/O, no deadline needed).
    pub fn watch_stats(&self) -> Option<origin_api::PollStats> {
        self.origin.watch_stats()
    }

    fn publish(&self, transition: Option<Transition>) {
        if let Some(t) = transition {
            match t.to {
                HealthStatus::Healthy => {
                    tracing::info!(origin = %self.id, "origin is healthy again")
                }
                _ => {
                    tracing::warn!(origin = %self.id, status = ?t.to, "origin health changed: {}", t.reason)
                }
            }
            self.events.publish(Event::OriginHealthChanged {
                id: self.id.clone(),
                from: format!("{:?}", t.from),
                to: format!("{:?}", t.to),
                reason: t.reason,
            });
        }
    }

    async fn call<T>(
        &self,
        op: &str,
        work: impl Future<Output = OriginResult<T>>,
    ) -> OriginResult<T> {
        self.call_counting(op, work, true).await
    }

    /// [`Self::call`]; a success counts towards health only if `success_counts`
    /// (starting a watch says nothing about whether the origin answers).
    async fn call_counting<T>(
        &self,
        op: &str,
        work: impl Future<Output = OriginResult<T>>,
        success_counts: bool,
    ) -> OriginResult<T> {
        let _guard = self.gate.enter().ok_or_else(|| {
            OriginError::unavailable(format!("origin `{}` is being taken down", self.id))
        })?;
        let started = tokio::time::Instant::now();
        let result = match tokio::time::timeout(self.deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(OriginError::timeout(format!(
                "origin `{}`: {op} took longer than {} ms",
                self.id,
                self.deadline.as_millis()
            ))),
        };
        record_call(&self.id, op, started.elapsed(), result.as_ref().err());
        let transition = match &result {
            Ok(_) if !success_counts => None,
            Ok(_) => self.health.record_success(started.elapsed()),
            Err(e) => self.health.record_failure(e.kind(), &e.to_string()),
        };
        self.publish(transition);
        result
    }

    /// `stat`, with the deadline.
    pub async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        self.call("stat", self.origin.stat(path)).await
    }

    /// One page of `list`, with the deadline.
    pub async fn list(
        &self,
        dir: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> OriginResult<ListPage> {
        self.call("list", self.origin.list(dir, cursor, limit))
            .await
    }

    /// A ranged `read`, with the deadline.
    pub async fn read(&self, path: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        let read = self.call("read", self.origin.read(path, offset, len)).await;
        if let Ok(bytes) = &read {
            counter!(names::ORIGIN_READ_BYTES, "origin" => self.id.clone())
                .increment(bytes.len() as u64);
        }
        read
    }

    /// A ranged read of the version `expected` (the origin's token for the file
    /// as recorded), with the deadline. When the origin says the file changed,
    /// the change is also handed to this origin's watches, as if the origin had
    /// reported it: the library looks at the file again and shows its new
    /// version, while this read fails instead of mixing versions.
    pub async fn read_version(
        &self,
        path: &str,
        offset: u64,
        len: u32,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>> {
        let read = self
            .call(
                "read",
                self.origin.read_version(path, offset, len, expected),
            )
            .await;
        match &read {
            Ok(bytes) => counter!(names::ORIGIN_READ_BYTES, "origin" => self.id.clone())
                .increment(bytes.len() as u64),
            Err(e) if e.kind() == origin_api::ErrorKind::Changed => self.report_changed(path),
            Err(_) => {}
        }
        read
    }

    /// A streaming read of the version `expected`. The stream holds this origin's
    /// gate for its whole life (so taking the origin down waits for it, and it
    /// ends at once when that starts); each piece has the deadline; the first
    /// piece counts towards health as a call's answer does, and a failure as a
    /// failed call. `Changed` is handed to the watches as [`Self::read_version`]
    /// does.
    pub fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        let Some(guard) = self.gate.enter() else {
            return ReadStream::failed(OriginError::unavailable(format!(
                "origin `{}` is being taken down",
                self.id
            )));
        };
        struct Going<'a> {
            inner: ReadStream<'a>,
            _guard: CallGuard,
            started: Option<tokio::time::Instant>,
        }
        let going = Going {
            inner: self.origin.read_stream(path, offset, len, expected),
            _guard: guard,
            started: Some(tokio::time::Instant::now()),
        };
        ReadStream::of_pieces(futures_util::stream::unfold(
            Some(going),
            move |going| async move {
                let mut going = going?;
                let started = going.started.take();
                let failed = |e: OriginError| {
                    if let Some(started) = started {
                        record_call(&self.id, "read_stream", started.elapsed(), Some(&e));
                    }
                    self.publish(self.health.record_failure(e.kind(), &e.to_string()));
                    if e.kind() == origin_api::ErrorKind::Changed {
                        self.report_changed(path);
                    }
                    Some((Err(e), None))
                };
                if self.gate.is_closing() {
                    return failed(OriginError::unavailable(format!(
                        "origin `{}` is being taken down",
                        self.id
                    )));
                }
                match tokio::time::timeout(self.deadline, going.inner.next_piece()).await {
                    Err(_) => failed(OriginError::timeout(format!(
                        "origin `{}`: a read waited longer than {} ms for data",
                        self.id,
                        self.deadline.as_millis()
                    ))),
                    Ok(Some(Err(e))) => failed(e),
                    Ok(Some(Ok(piece))) => {
                        if let Some(started) = started {
                            record_call(&self.id, "read_stream", started.elapsed(), None);
                            self.publish(self.health.record_success(started.elapsed()));
                        }
                        counter!(names::ORIGIN_READ_BYTES, "origin" => self.id.clone())
                            .increment(piece.len() as u64);
                        Some((Ok(piece), Some(going)))
                    }
                    Ok(None) => None,
                }
            },
        ))
    }

    /// Returns once the origin is being taken down: a stream paused between
    /// pieces ends then, instead of holding the origin up.
    pub async fn taken_down(&self) {
        self.gate.closing().await;
    }

    /// Tells this origin's watches that `path` changed, as if the origin had.
    fn report_changed(&self, path: &str) {
        let watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        for (sink, _) in watches.iter() {
            sink.send(ChangeEvent::new(origin_api::ChangeKind::Modified, path));
        }
    }

    /// A health check, with the deadline; a timeout or refusal is unhealthy. The
    /// answer updates the origin's health.
    pub async fn health(&self) -> Health {
        let Some(_guard) = self.gate.enter() else {
            return Health::unhealthy(format!("origin `{}` is being taken down", self.id));
        };
        let health = match tokio::time::timeout(self.deadline, self.origin.health()).await {
            Ok(health) => health,
            Err(_) => Health::unhealthy(format!(
                "no answer to a health check within {} ms",
                self.deadline.as_millis()
            )),
        };
        self.publish(self.health.record_check(&health));
        health
    }

    /// Starts a watch delivering to `deliver`; it runs until the origin is unregistered.
    pub async fn watch(
        &self,
        deliver: impl Fn(ChangeEvent) + Send + Sync + 'static,
    ) -> OriginResult<()> {
        let sink = EventSink::new(deliver);
        let handle = self
            .call_counting("watch", self.origin.watch(sink.clone()), false)
            .await?;
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((sink, handle));
        Ok(())
    }

    /// Calls in flight right now.
    pub fn calls_in_flight(&self) -> usize {
        self.gate.in_flight()
    }

    /// Stops the watches (no event is delivered once this returns), refuses new
    /// calls and waits up to `limit` for the ones in flight.
    async fn take_down(&self, limit: Duration) {
        let watches = std::mem::take(&mut *self.watches.lock().unwrap_or_else(|p| p.into_inner()));
        for (sink, handle) in watches {
            sink.close();
            handle.stop();
        }
        let left = self.gate.drain(limit).await;
        if left > 0 {
            tracing::warn!(origin = %self.id, left, "calls still running after {limit:?}; dropping the origin anyway");
        }
    }
}

/// Counts one call and its time (see `control::metrics`).
fn record_call(origin: &str, op: &str, took: Duration, error: Option<&OriginError>) {
    let outcome = match error.map(OriginError::kind) {
        None => "ok",
        Some(origin_api::ErrorKind::Timeout) => "timeout",
        Some(_) => "error",
    };
    let (origin, op) = (origin.to_owned(), op.to_owned());
    counter!(names::ORIGIN_REQUESTS, "origin" => origin.clone(), "op" => op.clone(), "outcome" => outcome)
        .increment(1);
    histogram!(names::ORIGIN_REQUEST_SECONDS, "origin" => origin, "op" => op)
        .record(took.as_secs_f64());
}

/// All live origins, by id.
pub struct Registry {
    origins: RwLock<BTreeMap<String, Arc<RegisteredOrigin>>>,
    events: EventBus,
    /// Bumped on every register and unregister, for the host's own loops (which so
    /// need not listen to the whole event bus).
    changes: tokio::sync::watch::Sender<u64>,
    next_serial: std::sync::atomic::AtomicU64,
}

impl Registry {
    /// An empty registry publishing to `events`.
    pub fn new(events: EventBus) -> Self {
        Registry {
            origins: RwLock::new(BTreeMap::new()),
            events,
            changes: tokio::sync::watch::Sender::new(0),
            next_serial: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Changes (to a counter) whenever an origin is registered or unregistered.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Adds `origin`, taking down any origin registered before under the same id.
    pub async fn register(&self, mut origin: RegisteredOrigin) -> Arc<RegisteredOrigin> {
        origin.events = self.events.clone();
        origin.serial = self
            .next_serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let origin = Arc::new(origin);
        let old = self
            .origins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(origin.id.clone(), origin.clone());
        if let Some(old) = old {
            self.finish(old).await;
        }
        tracing::info!(origin = %origin.id, kind = %origin.kind, priority = origin.priority, "origin registered");
        self.events.publish(Event::OriginRegistered {
            id: origin.id.clone(),
            kind: origin.kind.clone(),
        });
        self.changes.send_modify(|n| *n += 1);
        origin
    }

    /// Takes origin `id` down; returns whether it was registered.
    pub async fn unregister(&self, id: &str) -> bool {
        let removed = self
            .origins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        match removed {
            Some(origin) => {
                self.finish(origin).await;
                true
            }
            None => false,
        }
    }

    async fn finish(&self, origin: Arc<RegisteredOrigin>) {
        origin.take_down(DRAIN_LIMIT).await;
        tracing::info!(origin = %origin.id, kind = %origin.kind, "origin unregistered");
        self.events.publish(Event::OriginUnregistered {
            id: origin.id.clone(),
            kind: origin.kind.clone(),
        });
        self.changes.send_modify(|n| *n += 1);
    }

    /// The origin `id`, if live.
    pub fn get(&self, id: &str) -> Option<Arc<RegisteredOrigin>> {
        self.origins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every live origin, by priority then id.
    pub fn all(&self) -> Vec<Arc<RegisteredOrigin>> {
        let mut all: Vec<_> = self
            .origins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
        all
    }

    /// The ids of the live origins of `kind`.
    pub fn ids_of_kind(&self, kind: &str) -> Vec<String> {
        self.origins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|o| o.kind == kind)
            .map(|o| o.id.clone())
            .collect()
    }
}
