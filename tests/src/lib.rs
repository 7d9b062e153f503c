//! Shared helpers of the end-to-end tests: where the built plugin libraries and the
//! `musicfs` binary are, a conformance fixture for local folders, and waiting for
//! host events.
//!
//! The tests load the `.so` files that `cargo build --workspace --lib --bins --examples` produced, never a
//! statically linked copy, so they exercise the real boundary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use musicfs::telemetry::events::Event;
use origin_api::testkit::Fixture;
use tokio::sync::broadcast;

/// The cargo output folder these tests were built into (`target/debug`).
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_owned()
}

/// The built plugin library `lib<name>.so`.
pub fn plugin_library(name: &str) -> PathBuf {
    let path = build_dir().join(format!("lib{name}.so"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --lib --bins --examples` before the tests",
        path.display()
    );
    path
}

/// Copies the built `lib<name>.so` into `plugins_dir` (made if missing), as a user
/// would drop it there.
pub fn install_plugin(plugins_dir: &Path, name: &str) {
    std::fs::create_dir_all(plugins_dir).unwrap();
    std::fs::copy(
        plugin_library(name),
        plugins_dir.join(format!("lib{name}.so")),
    )
    .unwrap();
}

/// The local plugin.
pub fn local_plugin() -> PathBuf {
    plugin_library("musicfs_local")
}

/// The built `musicfs` binary.
/// How tests run plugin processes: with the built `musicfs` (the test binary
/// is not one).
pub fn plugin_processes() -> musicfs::plugins::process::ProcessOptions {
    musicfs::plugins::process::ProcessOptions::new(std::time::Duration::from_secs(5))
        .with_executable(musicfs_binary())
}

pub fn musicfs_binary() -> PathBuf {
    let path = build_dir().join("musicfs");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --lib --bins`",
        path.display()
    );
    path
}

/// Puts the built `musicfs` at `dest`, to be run from there (a test of where
/// it looks beside itself, or of a binary a user other than root may read).
///
/// A hard link where the file system allows one, not a copy: a copy holds a
/// file open for writing, and a process another test thread forks at that
/// moment keeps that descriptor until its own exec, so running the copy then
/// fails with "Text file busy" (ETXTBSY; CI saw it once). A link never opens
/// the file for writing. Across file systems it falls back to a copy, and the
/// run is retried while the kernel still says the file is busy.
pub fn place_musicfs_binary(dest: &Path) {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    if std::fs::hard_link(musicfs_binary(), dest).is_ok() {
        return;
    }
    std::fs::copy(musicfs_binary(), dest).unwrap();
    // Wait until no forked child still holds the copy's write descriptor:
    // opening it for execution-style reading succeeds either way, so ask
    // the kernel the way exec does, by running it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match std::process::Command::new(dest)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} stayed busy for 30 s",
                    dest.display()
                );
                std::thread::yield_now();
            }
            _ => return,
        }
    }
}

/// Writes the conformance fixture into a local folder.
pub struct LocalFixture {
    pub root: PathBuf,
}

#[async_trait::async_trait]
impl Fixture for LocalFixture {
    async fn write(&self, path: &str, data: &[u8]) -> std::io::Result<()> {
        let full = self.root.join(path);
        std::fs::create_dir_all(full.parent().expect("fixture paths have a parent"))?;
        std::fs::write(full, data)
    }

    async fn write_sparse(&self, path: &str, size: u64, tail: &[u8]) -> std::io::Result<bool> {
        use std::os::unix::fs::FileExt;
        let full = self.root.join(path);
        std::fs::create_dir_all(full.parent().expect("fixture paths have a parent"))?;
        let file = std::fs::File::create(full)?;
        file.set_len(size)?;
        file.write_all_at(tail, size - tail.len() as u64)?;
        Ok(true)
    }

    async fn remove(&self, path: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.root.join(path))
    }

    async fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        std::fs::rename(self.root.join(from), self.root.join(to))
    }
}

/// Settings for a local origin serving `path`.
pub fn local_settings(id: &str, path: &Path) -> origin_api::Settings {
    let mut table = toml::Table::new();
    table.insert("path".into(), path.display().to_string().into());
    origin_api::Settings::new(id, table)
}

/// Waits up to `limit` for an event matching `wanted`; panics with what was seen.
pub async fn wait_for_event(
    rx: &mut broadcast::Receiver<Event>,
    limit: Duration,
    wanted: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(event)) if wanted(&event) => return event,
            Ok(Ok(event)) => seen.push(event),
            Ok(Err(e)) => panic!("event bus: {e}"),
            Err(_) => panic!("no matching event within {limit:?}; saw {seen:#?}"),
        }
    }
}

/// A built example plugin library, `examples/lib<name>.so` (`cargo build --examples`,
/// which `cargo test` does).
pub fn example_library(name: &str) -> PathBuf {
    let path = build_dir().join("examples").join(format!("lib{name}.so"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --lib --bins --examples` before the tests",
        path.display()
    );
    path
}

/// Bytes of chunks stored in the packs of a cache folder.
pub fn chunk_bytes(cache: &Path) -> u64 {
    chunk_packs::records(cache).iter().map(|r| r.len).sum()
}

/// An extended attribute of a file, as text.
pub fn xattr(path: &Path, name: &str) -> Option<String> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// Writes `work/musicfs.toml` with one origin `id` of the test-only faulty plugin
/// serving `source` under the faults written to `fault_file` (priority 1), then
/// `extra` (more TOML: other origins, `[health]`…), installs the plugin, and
/// returns the mount arguments that name the file.
pub fn faulty_folder_config(
    work: &Path,
    id: &str,
    source: &Path,
    fault_file: &Path,
    extra: &str,
) -> Vec<String> {
    let config = work.join("musicfs.toml");
    std::fs::write(
        &config,
        format!(
            "[[origins]]\nid = \"{id}\"\ntype = \"faulty\"\npriority = 1\npath = \"{}\"\nfault_file = \"{}\"\n{extra}",
            source.display(),
            fault_file.display()
        ),
    )
    .unwrap();
    install_plugin(&work.join("plugins"), "musicfs_test_faulty");
    vec!["--config".into(), config.display().to_string()]
}

/// Runs `musicfs scan` (as `command`, e.g. under `setpriv`) over one `--origin`;
/// whether it succeeded, and everything it printed.
pub fn scan_with(
    mut command: std::process::Command,
    plugins: &Path,
    cache: &Path,
    origin: &str,
) -> (bool, String) {
    let out = command
        .arg("scan")
        .arg("--plugins")
        .arg(plugins)
        .arg("--cache-dir")
        .arg(cache)
        .args(["--origin", origin])
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// Writes `work/musicfs.toml`: one local origin `id` serving `source`, then
/// `extra` (TOML); returns its path.
pub fn local_config(work: &Path, id: &str, source: &Path, extra: &str) -> PathBuf {
    let file = work.join("musicfs.toml");
    let text = format!(
        "[[origins]]\nid = \"{id}\"\ntype = \"local\"\npath = \"{}\"\n\n{extra}",
        source.display()
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// The status of the mount at `mountpoint` as `musicfs status --json` prints it.
pub fn status_json(mountpoint: &Path) -> String {
    let out = std::process::Command::new(musicfs_binary())
        .args(["status", "--json", "--mount"])
        .arg(mountpoint)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status of the mount at `mountpoint`.
pub fn status_of(mountpoint: &Path) -> musicfs::control::status::Status {
    serde_json::from_str(&status_json(mountpoint)).unwrap()
}

/// [`scan_with`] the built `musicfs`.
pub fn scan(plugins: &Path, cache: &Path, origin: &str) -> (bool, String) {
    scan_with(
        std::process::Command::new(musicfs_binary()),
        plugins,
        cache,
        origin,
    )
}

pub mod audio_library;
pub mod bench_support;
pub mod chunk_packs;
pub mod events;
pub mod garage_cluster;
pub mod http_recorder;
pub mod link;
pub mod mounted;
pub mod mpd_server;
pub mod nfs_server;
pub mod origin_kinds;
pub mod s3_server;
pub mod smb_server;
pub mod ssh_server;
pub mod supysonic_server;
