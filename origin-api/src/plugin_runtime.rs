//! The plugin's own tokio runtime, and the one helper that runs a call on it.
//!
//! Each cdylib carries its own copy of tokio's statics, so a plugin cannot use the
//! host's runtime: a future that touches tokio's reactor must be polled on a runtime
//! of the plugin's own copy. Every call from the host therefore spawns the real work
//! here and hands back an `FfiFuture` that only waits for the task's result. That
//! outer future needs no runtime at all, so the host can poll it anywhere; dropping
//! it aborts the task, which is how the host's deadlines cancel plugin work.
//!
//! A panic inside the task surfaces as a `JoinError` and becomes an `Other` error for
//! that one call; a panic while spawning is caught with `catch_unwind`. Nothing ever
//! unwinds across the boundary (abi_stable would abort the process).

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Duration;

use abi_stable::std_types::{RErr, ROk};
use async_ffi::{FfiFuture, FutureExt};
use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::ffi::FfiResult;
use crate::{OriginError, OriginResult};

/// `None` until the first call, and again after `shutdown`; a plugin that is loaded
/// again after a logical unload gets a fresh runtime.
static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// A handle to the plugin's runtime, building it on first use.
pub(crate) fn handle() -> Handle {
    let mut runtime = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    runtime
        .get_or_insert_with(|| {
            Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("musicfs-plugin")
                .enable_all()
                .build()
                .expect("cannot start the plugin's tokio runtime")
        })
        .handle()
        .clone()
}

/// Stops the runtime, giving running tasks a moment to finish.
pub(crate) fn shutdown() {
    let runtime = RUNTIME.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(runtime) = runtime {
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Runs `work` on the plugin's runtime and returns a future for its result that the
/// host can poll from any thread. `op` names the call in error messages.
pub(crate) fn spawn_call<T, F>(op: &'static str, work: F) -> FfiFuture<FfiResult<T>>
where
    T: Send + 'static,
    F: Future<Output = OriginResult<T>> + Send + 'static,
{
    let spawned = catch_unwind(AssertUnwindSafe(|| handle().spawn(work)));
    async move {
        let task = match spawned {
            Ok(task) => AbortOnDrop(task),
            Err(panic) => return RErr(panicked(op, &*panic).into()),
        };
        match task.await {
            Ok(Ok(value)) => ROk(value),
            Ok(Err(err)) => RErr(err.into()),
            Err(err) if err.is_panic() => RErr(panicked(op, &*err.into_panic()).into()),
            Err(_) => {
                RErr(OriginError::unavailable(format!("{op}: the plugin is shutting down")).into())
            }
        }
    }
    .into_ffi()
}

/// The error a panic becomes.
pub(crate) fn panicked(op: &str, payload: &(dyn Any + Send)) -> OriginError {
    OriginError::other(format!(
        "plugin panicked in {op}: {}",
        panic_message(payload)
    ))
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Aborts the task when the host drops the future before it finishes.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
