//! The host's end of one plugin process's socket, for the life of that process
//! (one generation): calls waiting for answers, streams, watches, liveness.
//!
//! Frames to the child go through one writer task; one reader task hands each
//! answer to whoever waits for it. When the process goes, [`Connection::close`]
//! fails everything waiting with the reason, so no caller waits past the crash.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::Stream;
use origin_api::read_stream::Piece;
use origin_api::{EventSink, OriginError, OriginResult, PollStats};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::pieces::{HeldSlot, Pool};
use super::wire::{self, ToChild, ToHost};

/// How much of a stream the child may send ahead of what the host has taken.
pub const STREAM_CREDIT: u32 = 4 << 20;

type Answer = OriginResult<(ToHost, Vec<u8>)>;

enum Waiter {
    Once(oneshot::Sender<Answer>),
    Stream {
        pieces: mpsc::UnboundedSender<OriginResult<Option<Piece>>>,
    },
    Watch {
        sink: EventSink,
        started: Option<oneshot::Sender<Answer>>,
    },
}

/// What tells a live process from a stuck one.
struct Liveness {
    last_pong: Instant,
    /// Since when calls have been given up (dropped at their deadline)
    /// without any answer arriving after.
    abandoned_since: Option<Instant>,
}

pub struct Connection {
    pub generation: u64,
    kind: String,
    /// `None` once the host hung up.
    out: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    pending: Mutex<HashMap<u64, Waiter>>,
    next_call: AtomicU64,
    closed: Mutex<Option<String>>,
    liveness: Mutex<Liveness>,
    stats: Mutex<HashMap<u64, PollStats>>,
    /// The pool the child puts pieces in, if it has one.
    pool: Option<Arc<Pool>>,
    /// Tells the child a slot is free again (held weakly by each piece).
    give_back: Arc<dyn Fn(u32) + Send + Sync>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connection {
    /// A connection over `output`; frames arriving on the other half are fed
    /// to it by [`read_loop`].
    pub fn new(
        generation: u64,
        kind: String,
        output: OwnedWriteHalf,
        pool: Option<Pool>,
    ) -> Arc<Self> {
        let (out, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_frames(output, rx));
        Arc::new_cyclic(|me: &std::sync::Weak<Connection>| Connection {
            generation,
            kind,
            out: Mutex::new(Some(out)),
            pending: Mutex::default(),
            next_call: AtomicU64::new(1),
            closed: Mutex::new(None),
            liveness: Mutex::new(Liveness {
                last_pong: Instant::now(),
                abandoned_since: None,
            }),
            stats: Mutex::default(),
            pool: pool.map(Arc::new),
            give_back: {
                let me = me.clone();
                Arc::new(move |slot| {
                    if let Some(conn) = me.upgrade() {
                        conn.send(&ToChild::Release { slot });
                    }
                })
            },
        })
    }

    fn send(&self, frame: &ToChild) {
        if let Some(out) = lock(&self.out).as_ref() {
            let _ = out.send(wire::encode(frame, 0));
        }
    }

    /// Closes the host's side of the socket once what was sent is written:
    /// the child sees the end and exits.
    pub fn hang_up(&self) {
        lock(&self.out).take();
    }

    fn closed_error(&self) -> Option<OriginError> {
        lock(&self.closed)
            .as_ref()
            .map(|why| OriginError::unavailable(why.clone()))
    }

    /// Sends the call `frame(number)` and waits for its answer. Dropping the
    /// future cancels the call in the child.
    pub fn call(
        self: &Arc<Self>,
        frame: impl FnOnce(u64) -> ToChild,
    ) -> impl Future<Output = Answer> + Send + 'static {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let closed = {
            let mut pending = lock(&self.pending);
            match self.closed_error() {
                Some(e) => Some(e),
                None => {
                    pending.insert(call, Waiter::Once(tx));
                    None
                }
            }
        };
        if closed.is_none() {
            self.send(&frame(call));
        }
        let mut guard = CancelOnDrop {
            conn: self.clone(),
            call,
            armed: closed.is_none(),
            counts: true,
        };
        async move {
            if let Some(e) = closed {
                return Err(e);
            }
            let answer = rx.await.unwrap_or_else(|_| {
                Err(guard
                    .conn
                    .closed_error()
                    .unwrap_or_else(|| OriginError::unavailable("plugin process went away")))
            });
            guard.disarm();
            answer
        }
    }

    /// Starts the streaming read `frame(number)`: its pieces, as the host
    /// takes them (each one taken is credited back to the child). Dropping the
    /// stream cancels the read.
    pub fn stream(
        self: &Arc<Self>,
        frame: impl FnOnce(u64) -> ToChild,
    ) -> impl Stream<Item = OriginResult<Piece>> + Send + 'static {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let closed = {
            let mut pending = lock(&self.pending);
            match self.closed_error() {
                Some(e) => Some(e),
                None => {
                    pending.insert(call, Waiter::Stream { pieces: tx });
                    None
                }
            }
        };
        if closed.is_none() {
            self.send(&frame(call));
        }
        let guard = CancelOnDrop {
            conn: self.clone(),
            call,
            armed: closed.is_none(),
            counts: false,
        };
        futures_util::stream::unfold(
            (Some(rx), guard, closed),
            |(rx, mut guard, closed)| async move {
                if let Some(e) = closed {
                    return Some((Err(e), (None, guard, None)));
                }
                let mut rx = rx?;
                match rx.recv().await {
                    Some(Ok(Some(piece))) => {
                        guard.conn.send(&ToChild::Credit {
                            call: guard.call,
                            bytes: piece.len() as u32,
                        });
                        Some((Ok(piece), (Some(rx), guard, None)))
                    }
                    Some(Ok(None)) => {
                        guard.disarm();
                        None
                    }
                    Some(Err(e)) => {
                        guard.disarm();
                        Some((Err(e), (None, guard, None)))
                    }
                    None => {
                        guard.disarm();
                        let e = guard.conn.closed_error().unwrap_or_else(|| {
                            OriginError::unavailable("plugin process went away")
                        });
                        Some((Err(e), (None, guard, None)))
                    }
                }
            },
        )
    }

    /// Starts a watch of `origin` delivering to `sink`; its call number, which
    /// [`Connection::cancel`] stops.
    pub async fn watch(self: &Arc<Self>, origin: u64, sink: EventSink) -> OriginResult<u64> {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if let Some(e) = self.closed_error() {
                return Err(e);
            }
            pending.insert(
                call,
                Waiter::Watch {
                    sink,
                    started: Some(tx),
                },
            );
        }
        self.send(&ToChild::Watch { call, origin });
        let mut guard = CancelOnDrop {
            conn: self.clone(),
            call,
            armed: true,
            counts: false,
        };
        let answer = rx.await.unwrap_or_else(|_| {
            Err(self
                .closed_error()
                .unwrap_or_else(|| OriginError::unavailable("plugin process went away")))
        });
        match answer {
            Ok(_) => {
                guard.disarm();
                Ok(call)
            }
            Err(e) => Err(e),
        }
    }

    /// Stops a call, stream or watch.
    pub fn cancel(&self, call: u64) {
        if lock(&self.pending).remove(&call).is_some() {
            self.send(&ToChild::Cancel { call });
        }
    }

    /// Tells the child to drop an origin.
    pub fn close_origin(&self, origin: u64) {
        self.send(&ToChild::Close { origin });
    }

    /// The last watch figures the child sent for `origin`.
    pub fn stats_of(&self, origin: u64) -> Option<PollStats> {
        lock(&self.stats).get(&origin).copied()
    }

    pub fn ping(&self, seq: u64) {
        self.send(&ToChild::Ping { seq });
    }

    /// Why the process looks stuck, if it does: no pong for `ping_timeout`, or
    /// calls given up for `hang_after` with no answer to any call since.
    pub fn stuck(&self, ping_timeout: Duration, hang_after: Duration) -> Option<String> {
        let live = lock(&self.liveness);
        if live.last_pong.elapsed() > ping_timeout {
            return Some(format!(
                "stopped answering pings for {} s",
                ping_timeout.as_secs()
            ));
        }
        match live.abandoned_since {
            Some(since) if since.elapsed() > hang_after => Some(format!(
                "stopped answering: calls given up at their deadline, none answered for {} s",
                since.elapsed().as_secs()
            )),
            _ => None,
        }
    }

    fn answered(&self) {
        lock(&self.liveness).abandoned_since = None;
    }

    fn abandoned(&self) {
        lock(&self.liveness)
            .abandoned_since
            .get_or_insert_with(Instant::now);
    }

    /// Fails everything waiting with `why`; later calls fail at once with it.
    pub fn close(&self, why: &str) {
        let waiting: Vec<Waiter> = {
            let mut pending = lock(&self.pending);
            *lock(&self.closed) = Some(why.to_owned());
            pending.drain().map(|(_, w)| w).collect()
        };
        for waiter in waiting {
            let error = OriginError::unavailable(why.to_owned());
            match waiter {
                Waiter::Once(tx) => drop(tx.send(Err(error))),
                Waiter::Stream { pieces } => drop(pieces.send(Err(error))),
                Waiter::Watch { started, .. } => {
                    if let Some(tx) = started {
                        let _ = tx.send(Err(error));
                    }
                }
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.closed).is_some()
    }

    /// Hands one frame from the child to whoever waits for it.
    fn dispatch(&self, frame: ToHost, payload: Vec<u8>) {
        match frame {
            ToHost::Pong { .. } => lock(&self.liveness).last_pong = Instant::now(),
            ToHost::Log {
                level,
                module,
                message,
            } => log(&self.kind, level, &module, &message),
            ToHost::WatchStats { origin, stats } => {
                lock(&self.stats).insert(origin, wire::stats_from_wire(stats));
            }
            ToHost::Event { call, kind, path } => {
                let sink = match lock(&self.pending).get(&call) {
                    Some(Waiter::Watch { sink, .. }) => sink.clone(),
                    _ => return,
                };
                sink.send(wire::change_from_wire(kind, path));
            }
            ToHost::Piece { call } => {
                self.answered();
                if let Some(Waiter::Stream { pieces }) = lock(&self.pending).get(&call) {
                    let _ = pieces.send(Ok(Some(Piece::from(payload))));
                }
            }
            ToHost::Slot { call, slot, len } => {
                self.answered();
                let held = self.pool.as_ref().and_then(|pool| {
                    HeldSlot::new(
                        pool.clone(),
                        slot,
                        len as usize,
                        Arc::downgrade(&self.give_back),
                    )
                });
                let piece = match held {
                    Some(held) => Ok(Some(Piece::held_by(held))),
                    None => Err(OriginError::other(format!(
                        "plugin process named slot {slot} ({len} bytes), which its pool has not"
                    ))),
                };
                match lock(&self.pending).get(&call) {
                    Some(Waiter::Stream { pieces }) => drop(pieces.send(piece)),
                    // Not wanted any more: the slot goes back (the piece
                    // drops here, or the child is told the same).
                    _ => {
                        if piece.is_err() {
                            (self.give_back)(slot);
                        }
                    }
                }
            }
            ToHost::End { call } => {
                self.answered();
                if let Some(Waiter::Stream { pieces }) = lock(&self.pending).remove(&call) {
                    let _ = pieces.send(Ok(None));
                }
            }
            ToHost::Watching { call } => {
                self.answered();
                if let Some(Waiter::Watch { started, .. }) = lock(&self.pending).get_mut(&call) {
                    if let Some(tx) = started.take() {
                        let _ = tx.send(Ok((ToHost::Watching { call }, Vec::new())));
                    }
                }
            }
            ToHost::Failed { call, error } => {
                self.answered();
                let error = OriginError::from(error);
                match lock(&self.pending).remove(&call) {
                    Some(Waiter::Once(tx)) => drop(tx.send(Err(error))),
                    Some(Waiter::Stream { pieces }) => drop(pieces.send(Err(error))),
                    Some(Waiter::Watch {
                        started: Some(tx), ..
                    }) => drop(tx.send(Err(error))),
                    _ => {}
                }
            }
            ToHost::Ready { .. } | ToHost::LoadFailed { .. } => {}
            answer => {
                let Some(call) = call_of(&answer) else { return };
                self.answered();
                if let Some(Waiter::Once(tx)) = lock(&self.pending).remove(&call) {
                    let _ = tx.send(Ok((answer, payload)));
                }
            }
        }
    }
}

fn call_of(answer: &ToHost) -> Option<u64> {
    match answer {
        ToHost::Opened { call, .. }
        | ToHost::Metadata { call, .. }
        | ToHost::Page { call, .. }
        | ToHost::Bytes { call }
        | ToHost::Health { call, .. } => Some(*call),
        _ => None,
    }
}

/// Cancels a call that is dropped before its answer came.
struct CancelOnDrop {
    conn: Arc<Connection>,
    call: u64,
    armed: bool,
    /// Whether dropping it unanswered says the process may be stuck: a call
    /// given up (at its deadline, mostly). Not a stream, which readers drop
    /// on purpose (a seek, a paused player), nor a watch.
    counts: bool,
}

impl CancelOnDrop {
    /// The call ended: nothing to cancel.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed && lock(&self.conn.pending).remove(&self.call).is_some() {
            self.conn.send(&ToChild::Cancel { call: self.call });
            if self.counts {
                self.conn.abandoned();
            }
        }
    }
}

/// Reads frames from the child until it closes its end or sends garbage.
pub async fn read_loop(conn: Arc<Connection>, mut input: OwnedReadHalf) -> String {
    loop {
        match wire::read_frame::<_, ToHost>(&mut input).await {
            Ok(Some((frame, payload))) => conn.dispatch(frame, payload),
            Ok(None) => return "closed its socket".into(),
            Err(e) => return format!("broke the protocol ({e})"),
        }
    }
}

async fn write_frames(output: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut output = BufWriter::with_capacity(16 << 10, output);
    while let Some(frame) = rx.recv().await {
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            if output.write_all(&frame).await.is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if output.flush().await.is_err() {
            return;
        }
    }
    let _ = output.shutdown().await;
}

/// Logs a plugin's event under its kind, as in-process plugins' events are.
pub(super) fn log(plugin: &str, level: u8, module: &str, message: &str) {
    match level {
        1 => tracing::error!(target: "musicfs::plugin", plugin, module, "{message}"),
        2 => tracing::warn!(target: "musicfs::plugin", plugin, module, "{message}"),
        3 => tracing::info!(target: "musicfs::plugin", plugin, module, "{message}"),
        4 => tracing::debug!(target: "musicfs::plugin", plugin, module, "{message}"),
        _ => tracing::trace!(target: "musicfs::plugin", plugin, module, "{message}"),
    }
}
