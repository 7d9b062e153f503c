//! Plugin side of a streaming read: a task on the plugin's runtime polls the
//! author's [`ReadStream`] into a buffer of at most `credit` bytes, and each of
//! the host's `next` calls takes everything buffered (up to [`PIECE_LIMIT`],
//! or one larger piece of the author's as it is).
//!
//! That is the coalescing rule: a piece never waits for more bytes than have
//! arrived (a reader waiting for its first 4 KiB gets them as soon as they are
//! here), and a host busy with the previous piece finds the next one grown to
//! whatever arrived meanwhile. The credit bounds the plugin's memory per stream
//! (credit plus one piece of the author's stream), and once it is full the task
//! stops polling, so the backend is paused by its own flow control (TCP's window,
//! say) instead of buffering without end.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RString, RVec};
use async_ffi::FfiFuture;
use futures_util::FutureExt;
use tokio::sync::Notify;

use crate::ffi::{FfiReadStream, FfiReadStreamBox, FfiReadStream_TO, FfiResult};
use crate::path::check_relative_path;
use crate::plugin_runtime::{self, panicked, spawn_call};
use crate::{Origin, OriginResult};

/// The most one `next` hands over at once, joining the author's pieces (a
/// larger piece of the author's goes alone).
pub(crate) const PIECE_LIMIT: usize = 1 << 20;

#[derive(Default)]
struct Buffer {
    /// The pieces arrived, in order, and how many bytes they hold.
    pieces: VecDeque<Vec<u8>>,
    len: usize,
    /// Set when the author's stream ended: `Ok` at its end, or its error.
    end: Option<OriginResult<()>>,
}

#[derive(Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    /// Bytes (or the end) arrived.
    arrived: Notify,
    /// The host took bytes: there is room again.
    taken: Notify,
}

impl Shared {
    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts polling `origin.read_stream(...)` on the plugin's runtime.
pub(crate) fn start(
    origin: Arc<dyn Origin>,
    path: RString,
    offset: u64,
    len: u64,
    expected: Option<String>,
    credit: u32,
) -> FfiReadStreamBox {
    let shared = Arc::new(Shared::default());
    let credit = (credit as usize).max(1);
    let producer = {
        let shared = shared.clone();
        async move {
            let polled = AssertUnwindSafe(produce(
                &*origin,
                &path,
                offset,
                len,
                expected.as_deref(),
                credit,
                &shared,
            ))
            .catch_unwind()
            .await;
            let end = match polled {
                Ok(end) => end,
                Err(panic) => Err(panicked("read_stream", &*panic)),
            };
            shared.buffer().end = Some(end);
            shared.arrived.notify_one();
        }
    };
    let task = std::panic::catch_unwind(AssertUnwindSafe(|| {
        plugin_runtime::handle().spawn(producer)
    }));
    let task = match task {
        Ok(task) => Some(task),
        Err(panic) => {
            shared.buffer().end = Some(Err(panicked("read_stream", &*panic)));
            None
        }
    };
    FfiReadStream_TO::from_value(StreamAdapter { shared, task }, TD_Opaque)
}

/// Polls the author's stream into the buffer, pausing while `credit` bytes wait.
async fn produce(
    origin: &dyn Origin,
    path: &str,
    offset: u64,
    len: u64,
    expected: Option<&str>,
    credit: usize,
    shared: &Shared,
) -> OriginResult<()> {
    check_relative_path(path)?;
    let mut stream = origin.read_stream(path, offset, len, expected);
    let mut delivered = 0u64;
    loop {
        while shared.buffer().len >= credit {
            // `Notify` keeps a permit, so a take between the check and this wait
            // is not missed.
            shared.taken.notified().await;
        }
        let Some(piece) = stream.next().await else {
            return Ok(());
        };
        let mut piece = piece?;
        // A stream that overruns its range would break the host's bookkeeping.
        let room = len - delivered;
        piece.truncate(room.min(usize::MAX as u64) as usize);
        delivered += piece.len() as u64;
        if !piece.is_empty() {
            let mut buffer = shared.buffer();
            buffer.len += piece.len();
            buffer.pieces.push_back(piece);
        }
        shared.arrived.notify_one();
        if delivered >= len {
            return Ok(());
        }
    }
}

struct StreamAdapter {
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FfiReadStream for StreamAdapter {
    fn next(&self) -> FfiFuture<FfiResult<ROption<RVec<u8>>>> {
        let shared = self.shared.clone();
        spawn_call("read_stream", async move {
            loop {
                {
                    let mut buffer = shared.buffer();
                    if let Some(mut piece) = buffer.pieces.pop_front() {
                        // Small pieces are joined up to the limit; a large one
                        // goes as it is (splitting it would copy the rest).
                        while let Some(next) = buffer.pieces.front() {
                            if piece.len() + next.len() > PIECE_LIMIT {
                                break;
                            }
                            let next = buffer.pieces.pop_front().unwrap_or_default();
                            piece.extend_from_slice(&next);
                        }
                        buffer.len -= piece.len();
                        drop(buffer);
                        shared.taken.notify_one();
                        return Ok(ROption::RSome(piece.into()));
                    }
                    match buffer.end.take() {
                        Some(Ok(())) => {
                            buffer.end = Some(Ok(()));
                            return Ok(ROption::RNone);
                        }
                        Some(Err(e)) => {
                            // Later calls see the end, not the error again.
                            buffer.end = Some(Ok(()));
                            return Err(e);
                        }
                        None => {}
                    }
                }
                shared.arrived.notified().await;
            }
        })
    }
}

impl Drop for StreamAdapter {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
