//! A fault-injecting test plugin (`type = "faulty"`), never shipped. With a `path`
//! setting it serves that folder (like the local plugin, without its care for
//! symlinks) and obeys `fault_file`: while that file holds `fail`, every call fails
//! (unavailable); `hang`, every call hangs; `slow`, every call takes 50 ms more;
//! `fail-reads`, `hang-reads` and `slow-reads` do the same to reads only.
//! The test writes the file to change faults while the host runs.
//!
//! Without `path`, its one file, `data.bin`, holds 1 MiB of
//! `origin_api::testkit::pattern`-like content, and settings choose the faults:
//!
//! - `panic_in = "open" | "stat" | "list" | "read" | "health" | "watch"`: that call panics;
//! - `hang_in = …`: that call never returns (until the host's deadline drops it);
//! - `health_file`: while this file exists, health is unhealthy with its content as
//!   the reason (lets a test make one version of the plugin fail its checks).
//!
//! It logs one `info` event per `open`, to check that plugin logs reach the host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use origin_api::{
    async_trait, DirEntry, EventSink, Health, ListPage, Metadata, Origin, OriginError,
    OriginResult, Plugin, PluginClass, PluginInfo, Settings, WatchHandle,
};

mod folder;

struct FaultyPlugin;

#[async_trait]
impl Plugin for FaultyPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("faulty", env!("CARGO_PKG_VERSION"), PluginClass::Remote)
    }

    async fn open(&self, settings: Settings) -> OriginResult<Box<dyn Origin>> {
        tracing::info!(origin = settings.origin_id(), "faulty origin opening");
        if let Some(path) = settings.get_str("path")? {
            return Ok(Box::new(folder::FaultyFolder {
                root: path.into(),
                fault_file: settings.get_str("fault_file")?.map(Into::into),
            }));
        }
        let origin = FaultyOrigin {
            panic_in: settings.get_str("panic_in")?.unwrap_or("").to_owned(),
            hang_in: settings.get_str("hang_in")?.unwrap_or("").to_owned(),
            health_file: settings.get_str("health_file")?.map(Into::into),
            size: 1 << 20,
            cancelled_reads: Arc::new(AtomicUsize::new(0)),
        };
        origin.fault("open").await;
        Ok(Box::new(origin))
    }
}

struct FaultyOrigin {
    panic_in: String,
    hang_in: String,
    health_file: Option<std::path::PathBuf>,
    size: u64,
    /// Reads dropped before they finished (the host's deadline cancelled them).
    cancelled_reads: Arc<AtomicUsize>,
}

/// Counts a read as cancelled if it is dropped before it finishes.
struct CancelWitness(Arc<AtomicUsize>, bool);

impl Drop for CancelWitness {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl FaultyOrigin {
    async fn fault(&self, op: &str) {
        if self.panic_in == op {
            panic!("faulty: injected panic in {op}");
        }
        if self.hang_in == op {
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        }
    }

    fn byte(i: u64) -> u8 {
        (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8
    }
}

#[async_trait]
impl Origin for FaultyOrigin {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        self.fault("stat").await;
        match path {
            "" => Ok(Metadata::directory(SystemTime::UNIX_EPOCH)),
            // The number of cancelled reads, as this file's size, so a test can see it.
            "cancelled-reads" => Ok(Metadata::file(
                self.cancelled_reads.load(Ordering::SeqCst) as u64,
                SystemTime::UNIX_EPOCH,
            )),
            "data.bin" => Ok(Metadata::file(self.size, SystemTime::UNIX_EPOCH)),
            _ => Err(OriginError::not_found(path)),
        }
    }

    async fn list(&self, dir: &str, _cursor: Option<&str>, _limit: u32) -> OriginResult<ListPage> {
        self.fault("list").await;
        if !dir.is_empty() {
            return Err(OriginError::not_found(dir));
        }
        Ok(ListPage::complete(vec![DirEntry {
            name: "data.bin".into(),
            metadata: Metadata::file(self.size, SystemTime::UNIX_EPOCH),
        }]))
    }

    async fn read(&self, path: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        let mut witness = CancelWitness(self.cancelled_reads.clone(), false);
        self.fault("read").await;
        if path != "data.bin" {
            return Err(OriginError::not_found(path));
        }
        let end = (offset + len as u64).min(self.size);
        let bytes = (offset.min(end)..end).map(Self::byte).collect();
        witness.1 = true;
        Ok(bytes)
    }

    async fn health(&self) -> Health {
        self.fault("health").await;
        match self.health_file.as_ref().map(std::fs::read_to_string) {
            Some(Ok(reason)) => Health::unhealthy(reason.trim()),
            _ => Health::healthy(),
        }
    }

    async fn watch(&self, _sink: EventSink) -> OriginResult<WatchHandle> {
        self.fault("watch").await;
        Ok(WatchHandle::on_stop(|| {}))
    }
}

origin_api::export_plugin!(|| FaultyPlugin);
