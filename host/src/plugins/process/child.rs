//! The plugin process: `musicfs plugin-host LIBRARY`, started by the host with
//! its end of a socket as file descriptor 3.
//!
//! It loads the library exactly as the host did when plugins ran inside it
//! (`origin_api::host::load_plugin`: the stamp, the layout check, the
//! constructor), says `Ready`, then serves calls until the host closes the
//! socket. Each call runs as a task of its own, so a slow read holds up nothing
//! else; a `Cancel` drops the task, which drops the plugin's future (and so
//! aborts the plugin's work, as a deadline does in one process). Pings are
//! answered by the loop that reads the socket, never behind a plugin call.
//!
//! Everything the plugin logs (and the child's own `tracing` events) goes to
//! the host as `Log` frames; the host logs them under the plugin's kind.

use std::collections::HashMap;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use origin_api::host::load_plugin;
use origin_api::read_stream::Piece;
use origin_api::{EventSink, Origin, OriginError, Settings, WatchHandle};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tracing_subscriber::layer::SubscriberExt;

use super::pieces::{FreeSlots, Pool, SLOT};
use super::wire::{self, ToChild, ToHost};

/// The socket to the host.
pub const SOCKET_FD: i32 = 3;
/// The environment variable carrying the host's log level (0 off … 5 trace).
pub const LOG_LEVEL_ENV: &str = "MUSICFS_PLUGIN_LOG_LEVEL";

/// How often changed watch figures are sent to the host.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// One frame on its way to the host: header, and the piece of a read if any.
struct Outgoing {
    header: Vec<u8>,
    payload: Option<Payload>,
    /// Told once the frame is written out.
    written: Option<tokio::sync::oneshot::Sender<()>>,
}

enum Payload {
    Piece(Piece),
    Bytes(Vec<u8>),
}

impl Payload {
    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Piece(p) => p,
            Payload::Bytes(b) => b,
        }
    }
}

#[derive(Clone)]
struct Out(mpsc::UnboundedSender<Outgoing>);

impl Out {
    fn send(&self, frame: ToHost) {
        let _ = self.0.send(Outgoing {
            header: wire::encode(&frame, 0),
            payload: None,
            written: None,
        });
    }

    /// Sends `frame` and waits until it is written.
    async fn send_last(&self, frame: ToHost) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.0.send(Outgoing {
            header: wire::encode(&frame, 0),
            payload: None,
            written: Some(tx),
        });
        let _ = rx.await;
    }

    fn send_with(&self, frame: ToHost, payload: Payload) {
        let _ = self.0.send(Outgoing {
            header: wire::encode(&frame, payload.bytes().len()),
            payload: Some(payload),
            written: None,
        });
    }
}

/// Runs the plugin process for `library`; returns when the host goes away.
pub fn run(library: &Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("plugin process: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: the host passes its end of a socket pair as this descriptor, and
    // nothing else in this process owns it. Close-on-exec: nothing a plugin
    // runs may hold the host's socket.
    let socket = unsafe {
        libc::fcntl(SOCKET_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        std::os::unix::net::UnixStream::from_raw_fd(SOCKET_FD)
    };
    let _in_runtime = runtime.enter();
    let socket = match socket
        .set_nonblocking(true)
        .and_then(|()| UnixStream::from_std(socket))
    {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("plugin process: no socket to the host on fd {SOCKET_FD}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut input, output) = socket.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let out = Out(tx);
    install_log_forwarding(out.clone());
    runtime.spawn(write_frames(output, rx));

    if std::env::var_os(super::sandbox::SANDBOX_ENV).is_some() {
        match super::sandbox::confine() {
            Ok(how) => tracing::debug!("plugin process confined: {how}"),
            Err(e) => tracing::warn!("plugin process runs unconfined: {e}"),
        }
    }
    let plugin = match load_plugin(library) {
        Ok(plugin) => plugin,
        Err(e) => {
            runtime.block_on(out.send_last(ToHost::LoadFailed {
                reason: e.to_string(),
            }));
            return ExitCode::from(2);
        }
    };
    out.send(ToHost::Ready {
        info: plugin.info().into(),
        api_version: plugin.api_version().to_owned(),
        rustc_version: plugin.rustc_version().to_owned(),
    });
    let served = Arc::new(Served {
        out: out.clone(),
        plugin,
        origins: Mutex::default(),
        calls: Mutex::default(),
        watches: Mutex::default(),
        credits: Mutex::default(),
        pool: match Pool::open_handed() {
            Ok(pool) => Some((pool, FreeSlots::all())),
            Err(e) => {
                tracing::warn!(
                    "plugin process: no shared pool ({e}); pieces go through the socket"
                );
                None
            }
        },
    });
    runtime.spawn(send_watch_stats(served.clone()));
    runtime.block_on(async {
        loop {
            match wire::read_frame::<_, ToChild>(&mut input).await {
                Ok(Some((frame, _))) => served.handle(frame),
                Ok(None) => break,
                Err(e) => {
                    tracing::error!("plugin process: bad frame from the host: {e}");
                    break;
                }
            }
        }
    });
    // The host is gone (or closed us): stop everything the plugin runs, and
    // exit even if the plugin does not let go.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(5));
        // SAFETY: ends the process without running anything else.
        unsafe { libc::_exit(3) }
    });
    served.stop_all();
    served.plugin.shutdown();
    ExitCode::SUCCESS
}

/// Writes frames in order, gathering small ones into one write.
async fn write_frames(
    output: tokio::net::unix::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut output = BufWriter::with_capacity(64 << 10, output);
    let mut written = Vec::new();
    while let Some(frame) = rx.recv().await {
        let mut next = Some(frame);
        while let Some(mut frame) = next.take() {
            written.extend(frame.written.take());
            if output.write_all(&frame.header).await.is_err() {
                return;
            }
            if let Some(payload) = &frame.payload {
                if output.write_all(payload.bytes()).await.is_err() {
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if output.flush().await.is_err() {
            return;
        }
        for told in written.drain(..) {
            let _ = told.send(());
        }
    }
}

/// How much of a stream the host has not yet taken.
struct Credit {
    outstanding: AtomicI64,
    returned: Notify,
}

/// What the child serves: the plugin, its open origins, running calls.
struct Served {
    out: Out,
    plugin: origin_api::host::LoadedPlugin,
    origins: Mutex<HashMap<u64, Arc<dyn Origin>>>,
    calls: Mutex<HashMap<u64, AbortHandle>>,
    watches: Mutex<HashMap<u64, WatchHandle>>,
    credits: Mutex<HashMap<u64, Arc<Credit>>>,
    /// The pool pieces go through, and its free slots.
    pool: Option<(Pool, FreeSlots)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Served {
    fn origin(&self, id: u64) -> Result<Arc<dyn Origin>, OriginError> {
        lock(&self.origins)
            .get(&id)
            .cloned()
            .ok_or_else(|| OriginError::unavailable("origin not open in the plugin process"))
    }

    fn failed(&self, call: u64, error: &OriginError) {
        self.out.send(ToHost::Failed {
            call,
            error: error.into(),
        });
    }

    fn handle(self: &Arc<Self>, frame: ToChild) {
        match frame {
            ToChild::Ping { seq } => self.out.send(ToHost::Pong { seq }),
            ToChild::Close { origin } => drop(lock(&self.origins).remove(&origin)),
            ToChild::Release { slot } => {
                if let Some((_, free)) = &self.pool {
                    free.give_back(slot);
                }
            }
            ToChild::Credit { call, bytes } => {
                if let Some(credit) = lock(&self.credits).get(&call) {
                    credit
                        .outstanding
                        .fetch_sub(i64::from(bytes), Ordering::AcqRel);
                    credit.returned.notify_one();
                }
            }
            ToChild::Cancel { call } => {
                if let Some(task) = lock(&self.calls).remove(&call) {
                    task.abort();
                }
                lock(&self.credits).remove(&call);
                if let Some(watch) = lock(&self.watches).remove(&call) {
                    watch.stop();
                }
            }
            ToChild::Open {
                call,
                origin_id,
                settings,
            } => self.spawn(call, move |me: Arc<Served>| async move {
                let settings = match toml::from_str::<toml::Table>(&settings) {
                    Ok(table) => Settings::new(origin_id, table),
                    Err(e) => return me.failed(call, &OriginError::invalid_config(e.to_string())),
                };
                match me.plugin.open(settings).await {
                    Ok(origin) => {
                        lock(&me.origins).insert(call, origin);
                        me.out.send(ToHost::Opened { call, origin: call });
                    }
                    Err(e) => me.failed(call, &e),
                }
            }),
            ToChild::Stat { call, origin, path } => {
                self.spawn(call, move |me: Arc<Served>| async move {
                    let result = match me.origin(origin) {
                        Ok(o) => o.stat(&path).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(meta) => me.out.send(ToHost::Metadata {
                            call,
                            meta: (&meta).into(),
                        }),
                        Err(e) => me.failed(call, &e),
                    }
                })
            }
            ToChild::List {
                call,
                origin,
                dir,
                cursor,
                limit,
            } => self.spawn(call, move |me: Arc<Served>| async move {
                let result = match me.origin(origin) {
                    Ok(o) => o.list(&dir, cursor.as_deref(), limit).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(page) => me.out.send(wire::page_to_wire(call, &page)),
                    Err(e) => me.failed(call, &e),
                }
            }),
            ToChild::Read {
                call,
                origin,
                path,
                offset,
                len,
                expected,
            } => self.spawn(call, move |me: Arc<Served>| async move {
                let result = match me.origin(origin) {
                    Ok(o) => {
                        o.read_version(&path, offset, len, expected.as_deref())
                            .await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(bytes) => me
                        .out
                        .send_with(ToHost::Bytes { call }, Payload::Bytes(bytes)),
                    Err(e) => me.failed(call, &e),
                }
            }),
            ToChild::Stream {
                call,
                origin,
                path,
                offset,
                len,
                expected,
                credit,
            } => {
                let gate = Arc::new(Credit {
                    outstanding: AtomicI64::new(0),
                    returned: Notify::new(),
                });
                lock(&self.credits).insert(call, gate.clone());
                self.spawn(call, move |me: Arc<Served>| async move {
                    let origin = match me.origin(origin) {
                        Ok(o) => o,
                        Err(e) => {
                            lock(&me.credits).remove(&call);
                            return me.failed(call, &e);
                        }
                    };
                    let mut pieces = origin.read_stream(&path, offset, len, expected.as_deref());
                    loop {
                        while gate.outstanding.load(Ordering::Acquire) >= i64::from(credit) {
                            gate.returned.notified().await;
                        }
                        match pieces.next_piece().await {
                            Some(Ok(piece)) => {
                                gate.outstanding
                                    .fetch_add(piece.len() as i64, Ordering::AcqRel);
                                me.send_piece(call, piece);
                            }
                            Some(Err(e)) => break me.failed(call, &e),
                            None => break me.out.send(ToHost::End { call }),
                        }
                    }
                    lock(&me.credits).remove(&call);
                })
            }
            ToChild::Health { call, origin } => {
                self.spawn(call, move |me: Arc<Served>| async move {
                    match me.origin(origin) {
                        Ok(o) => {
                            let health = o.health().await;
                            me.out.send(ToHost::Health {
                                call,
                                status: wire::health_status_to_wire(health.status),
                                reason: health.reason,
                            });
                        }
                        Err(e) => me.failed(call, &e),
                    }
                })
            }
            ToChild::Watch { call, origin } => {
                self.spawn(call, move |me: Arc<Served>| async move {
                    let origin = match me.origin(origin) {
                        Ok(o) => o,
                        Err(e) => return me.failed(call, &e),
                    };
                    let out = me.out.clone();
                    let sink = EventSink::new(move |event| {
                        out.send(ToHost::Event {
                            call,
                            kind: wire::change_kind_to_wire(event.kind),
                            path: event.path,
                        })
                    });
                    match origin.watch(sink).await {
                        Ok(handle) => {
                            lock(&me.watches).insert(call, handle);
                            me.out.send(ToHost::Watching { call });
                        }
                        Err(e) => me.failed(call, &e),
                    }
                })
            }
        }
    }

    /// Sends a piece of stream `call`: through slots of the pool while there
    /// are free ones, the rest through the socket.
    fn send_piece(&self, call: u64, piece: Piece) {
        let Some((pool, free)) = &self.pool else {
            return self
                .out
                .send_with(ToHost::Piece { call }, Payload::Piece(piece));
        };
        let mut rest: &[u8] = &piece;
        while !rest.is_empty() {
            let Some(slot) = free.take() else {
                let inline = if rest.len() == piece.len() {
                    Payload::Piece(piece)
                } else {
                    Payload::Bytes(rest.to_vec())
                };
                return self.out.send_with(ToHost::Piece { call }, inline);
            };
            let (now, later) = rest.split_at(rest.len().min(SLOT));
            pool.write(slot, now);
            self.out.send(ToHost::Slot {
                call,
                slot,
                len: now.len() as u32,
            });
            rest = later;
        }
    }

    /// Runs one call as a task of its own, cancellable by its number.
    fn spawn<F>(self: &Arc<Self>, call: u64, work: impl FnOnce(Arc<Served>) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let me = self.clone();
        let future = work(self.clone());
        // Held while spawning, so the task's own removal comes after.
        let mut calls = lock(&self.calls);
        let task = tokio::spawn(async move {
            future.await;
            lock(&me.calls).remove(&call);
        });
        calls.insert(call, task.abort_handle());
    }

    fn stop_all(&self) {
        for (_, task) in lock(&self.calls).drain() {
            task.abort();
        }
        for (_, watch) in lock(&self.watches).drain() {
            watch.stop();
        }
        lock(&self.origins).clear();
    }
}

/// Sends each origin's watch figures when they change.
async fn send_watch_stats(served: Arc<Served>) {
    let mut sent: HashMap<u64, [u64; 8]> = HashMap::new();
    loop {
        tokio::time::sleep(STATS_EVERY).await;
        let origins: Vec<(u64, Arc<dyn Origin>)> = lock(&served.origins)
            .iter()
            .map(|(id, o)| (*id, o.clone()))
            .collect();
        sent.retain(|id, _| origins.iter().any(|(o, _)| o == id));
        for (id, origin) in origins {
            if let Some(stats) = origin.watch_stats() {
                let stats = wire::stats_to_wire(&stats);
                if sent.insert(id, stats) != Some(stats) {
                    served.out.send(ToHost::WatchStats { origin: id, stats });
                }
            }
        }
    }
}

/// Sends every `tracing` event of this process to the host.
fn install_log_forwarding(out: Out) {
    let level = std::env::var(LOG_LEVEL_ENV)
        .ok()
        .and_then(|l| l.parse::<u8>().ok())
        .unwrap_or(2);
    let filter = wire::filter_of(level);
    let subscriber = tracing_subscriber::registry()
        .with(Forward(out))
        .with(filter);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

struct Forward(Out);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Forward {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = wire::level_number(meta.level());
        let mut message = fields.message;
        for (name, value) in fields.rest {
            message.push_str(&format!(" {name}={value}"));
        }
        self.0.send(ToHost::Log {
            level,
            module: fields.module.unwrap_or_else(|| meta.target().to_owned()),
            message,
        });
    }
}

/// The fields of one event: its message, the plugin's module (as the loader's
/// log sink names it), and the rest as `name=value`.
#[derive(Default)]
struct Fields {
    message: String,
    module: Option<String>,
    rest: Vec<(&'static str, String)>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "module" => self.module = Some(value.to_owned()),
            "plugin" => {}
            name => self.rest.push((name, value.to_owned())),
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}
