//! What the plugin boundary costs, side by side in one run:
//!
//! - loading: time to load N distinct copies of a plugin library (each a fresh
//!   `dlopen`, stamp check, abi_stable layout check and constructor);
//! - calling: one `stat` and one 64-byte `read` on the faulty test plugin's origin
//!   through the `.so`, against the same work done by an origin linked into this
//!   binary, and through the host's registry (deadline and call gate) on top.
//!
//! Run: `cargo build --workspace --release && cargo bench -p musicfs-tests --bench plugin_boundary`

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use musicfs::origins::registry::RegisteredOrigin;
use musicfs_tests::plugin_library;
use origin_api::host::load_plugin;
use origin_api::{
    async_trait, EventSink, Health, ListPage, Metadata, Origin, OriginError, OriginResult,
    Settings, WatchHandle,
};

const CALLS: u32 = 20_000;
const COPIES: usize = 10;

/// The faulty plugin's `stat` and `read`, linked in.
struct DirectOrigin;

#[async_trait]
impl Origin for DirectOrigin {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        match path {
            "data.bin" => Ok(Metadata::file(1 << 20, SystemTime::UNIX_EPOCH)),
            _ => Err(OriginError::not_found(path)),
        }
    }
    async fn list(&self, _: &str, _: Option<&str>, _: u32) -> OriginResult<ListPage> {
        Ok(ListPage::default())
    }
    async fn read(&self, _: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        let end = (offset + len as u64).min(1 << 20);
        Ok((offset.min(end)..end)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8)
            .collect())
    }
    async fn health(&self) -> Health {
        Health::healthy()
    }
    async fn watch(&self, _: EventSink) -> OriginResult<WatchHandle> {
        Ok(WatchHandle::on_stop(|| {}))
    }
}

async fn per_call<F: Future>(mut call: impl FnMut() -> F) -> Duration {
    for _ in 0..1000 {
        call().await;
    }
    let started = Instant::now();
    for _ in 0..CALLS {
        call().await;
    }
    started.elapsed() / CALLS
}

fn micros(d: Duration) -> String {
    format!("{:8.2} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let library = plugin_library("musicfs_test_faulty");
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut loaded = Vec::new();
    for i in 0..COPIES {
        let copy = dir.path().join(format!("libcopy{i}.so"));
        std::fs::copy(&library, &copy).unwrap();
        let t = Instant::now();
        loaded.push((load_plugin(&copy).unwrap(), t.elapsed()));
    }
    let total = started.elapsed();
    let loads: Vec<Duration> = loaded.iter().map(|(_, d)| *d).collect();
    let mean = loads.iter().sum::<Duration>() / COPIES as u32;
    println!(
        "loading {COPIES} distinct plugin libraries ({} MB each)",
        std::fs::metadata(&library).unwrap().len() >> 20
    );
    println!("  per load (mean)      {:8.2} ms", mean.as_secs_f64() * 1e3);
    println!(
        "  slowest              {:8.2} ms",
        loads.iter().max().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "  all {COPIES}, with copying {:8.2} ms",
        total.as_secs_f64() * 1e3
    );

    let plugin = &loaded[0].0;
    let ffi = plugin
        .open(Settings::new("bench", toml::Table::new()))
        .await
        .unwrap();
    let direct: Arc<dyn Origin> = Arc::new(DirectOrigin);
    let registered = RegisteredOrigin::new(
        "bench".into(),
        "faulty".into(),
        1,
        "0".into(),
        "h".into(),
        ffi.clone(),
        Duration::from_secs(5),
    );

    println!("\none call, {CALLS} in a row (after 1000 warm-up calls)");
    let d_stat = per_call(|| direct.stat("data.bin")).await;
    let f_stat = per_call(|| ffi.stat("data.bin")).await;
    let r_stat = per_call(|| registered.stat("data.bin")).await;
    let d_read = per_call(|| direct.read("data.bin", 4096, 64)).await;
    let f_read = per_call(|| ffi.read("data.bin", 4096, 64)).await;
    let r_read = per_call(|| registered.read("data.bin", 4096, 64)).await;
    println!("                 linked in     through .so    + registry     .so / linked");
    for (name, d, f, r) in [
        ("stat", d_stat, f_stat, r_stat),
        ("read 64 B", d_read, f_read, r_read),
    ] {
        println!(
            "  {name:<12} {}   {}   {}   {:8.1}x",
            micros(d),
            micros(f),
            micros(r),
            f.as_secs_f64() / d.as_secs_f64()
        );
    }
}
