//! `musicfs mount`: a keeper process that holds the mount (see `mount::keeper`),
//! and the daemon that serves it: a FUSE session on the keeper's device, until
//! unmounted or interrupted.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::origin_flags::parse_origin_flag;
use crate::control::socket::ControlServer;
use crate::daemon::{load_config, log_report, Daemon, DaemonOptions};
use crate::fs::fuse::MusicFs;
use crate::library::sample;
use crate::mount::helper::Ready;
use crate::mount::mountpoint::check_mountpoint;

/// The longest a stop waits for received bytes to be stored.
pub const STOP_STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// FUSE threads: reads from the cache are served on them.
const FUSE_THREADS: usize = 4;

/// How the mount is made, beyond what the daemon needs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MountSettings {
    /// Other users may read the mount (FUSE `allow_other`).
    pub allow_other: bool,
    /// Root may read it (FUSE `allow_root`).
    pub allow_root: bool,
    /// The kernel checks file modes (FUSE `default_permissions`).
    pub default_permissions: bool,
    /// Where to serve Prometheus metrics (see `control::metrics`).
    pub metrics: Option<std::net::SocketAddr>,
}

/// Mounts and serves until Ctrl-C, SIGTERM or an external unmount: the
/// calling process keeps the mount and runs the daemon as a child, started
/// again if it dies (see `mount::keeper`). `ready` hears once the mount is up.
pub fn run(
    options: DaemonOptions,
    mountpoint: &Path,
    settings: &MountSettings,
    ready: &mut Ready,
) -> Result<(), String> {
    // Errors in the config are the caller's, before anything is mounted.
    load_config(&options)?;
    check_mountpoint(mountpoint)?;
    crate::mount::keeper::keep(options, mountpoint, settings, ready)
}

/// How a serving process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEnd {
    /// Told to stop (SIGTERM, SIGINT): the keeper unmounts, or starts another.
    Stopped,
    /// The mount went away under it (unmounted from outside).
    Unmounted,
}

/// The daemon, serving the mount the keeper holds: `device` is the mount's
/// FUSE device, `handshake` the socket the keeper replays the kernel's INIT on
/// (see `mount::device`). Ends the process when it stops, with the exit code
/// that tells the keeper how; returns only an error that kept it from serving.
pub fn serve(
    options: DaemonOptions,
    mountpoint: &Path,
    settings: &MountSettings,
    device: std::os::fd::OwnedFd,
    handshake: std::os::fd::OwnedFd,
) -> Result<std::convert::Infallible, String> {
    let mut config = load_config(&options)?;
    if config.origins.is_empty() {
        let sample = options.cache_dir(&config).join("sample-library");
        sample::ensure(&sample).map_err(|e| format!("cannot write the sample library: {e}"))?;
        eprintln!(
            "musicfs: no origin given; serving the sample library in {}",
            sample.display()
        );
        config.origins.push(parse_origin_flag(
            &format!("local:{}", sample.display()),
            &[],
            1,
        )?);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("musicfs")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    // From here on SIGTERM and SIGINT are noted, not fatal: one that comes
    // while the daemon starts (before it serves, or while origins open) ends
    // it in order.
    let mut stop = {
        let _in_runtime = runtime.enter();
        StopSignals::install().map_err(|e| format!("cannot handle signals: {e}"))?
    };
    if let Some(addr) = settings.metrics {
        let _in_runtime = runtime.enter();
        crate::control::metrics::serve(addr)?;
    }
    let daemon = Arc::new(Daemon::open(&options, config)?);
    let fs = MusicFs::new(
        daemon.view.clone(),
        daemon.cache.clone(),
        daemon.registry.clone(),
        daemon.events.clone(),
        runtime.handle().clone(),
        daemon.origins_started(),
        crate::daemon::read_policy(&daemon.config),
    )
    .with_passthrough(daemon.config.cache.passthrough)
    .with_pins(daemon.pins.clone());
    // The mount options are the keeper's; the session needs its ACL and threads.
    let mut fuse_config = fuser::Config::default();
    fuse_config.acl = if settings.allow_other {
        fuser::SessionACL::All
    } else if settings.allow_root {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    };
    fuse_config.n_threads = Some(FUSE_THREADS);
    if stop.received() {
        std::process::exit(crate::mount::keeper::exit_code(ServeEnd::Stopped));
    }
    let acl = fuse_config.acl;
    let session = fuser::Session::from_fd(fs, handshake, acl, fuse_config)
        .map_err(|e| format!("cannot start the FUSE session: {e}"))?;
    {
        use std::os::fd::{AsFd, AsRawFd};
        crate::mount::device::take_over(session.as_fd().as_raw_fd(), &device)
            .map_err(|e| format!("cannot take over the FUSE device: {e}"))?;
    }
    drop(device);
    let session = session
        .spawn()
        .map_err(|e| format!("cannot start the FUSE session: {e}"))?;
    // Each FUSE mount has a device number of its own: what is at the mountpoint
    // when we stop is ours only if it still has this one.
    let ours = device_at(mountpoint);
    if let (Some(dev), kib @ 1..) = (ours, daemon.config.cache.read_ahead_kb) {
        match crate::fs::read_ahead::set(dev, kib) {
            Ok(now) => tracing::debug!(kib = now, "kernel read-ahead raised"),
            Err(e) => {
                tracing::info!("kernel read-ahead left at its default ({e}); raising it needs root")
            }
        }
    }
    tracing::info!(mountpoint = %mountpoint.display(), files = daemon.view.snapshot().file_count(), "mounted");

    runtime.block_on(async {
        let status: crate::control::socket::StatusSource = {
            let (daemon, shown) = (daemon.clone(), mountpoint.display().to_string());
            Arc::new(move || {
                serde_json::to_string(&crate::control::status::status_of(&daemon, &shown))
                    .unwrap_or_default()
            })
        };
        let requests = Arc::new(crate::control::pin_requests::PinRequests {
            pins: daemon.pins.clone(),
            keeper: daemon.keeper.clone(),
            view: daemon.view.clone(),
            cache: daemon.cache.clone(),
            cache_dir: daemon.cache_dir.clone(),
        });
        let _control = ControlServer::start(mountpoint, daemon.events.clone(), status, requests)
            .map_err(|e| {
                tracing::warn!("no control socket (musicfs events will not reach this mount): {e}")
            })
            .ok();
        daemon.set_notifier(session.notifier());
        daemon.start_hooks(mountpoint);
        // Start-up, raced against a stop: a signal while the origins open
        // ends it there, and the mount is taken down below.
        let running = tokio::select! {
            running = start_serving(&daemon, settings) => running,
            () = stop.recv() => return,
        };
        wait_for_stop(&session, &mut stop).await;
        // What was played and arrived is stored before the end (bounded: a
        // disk that hangs does not hold a stop).
        let stored = daemon.cache.stored_what_arrived();
        let _ = tokio::time::timeout(STOP_STORE_WAIT, stored).await;
        // And recorded: the streams still running have not written their
        // manifests since their last 16 MiB.
        daemon.cache.record_running();
        // Left running: see below.
        std::mem::forget(running);
    });

    let still_ours = ours.is_some() && device_at(mountpoint) == ours;
    let end = if session.guard.is_finished() || !still_ours {
        ServeEnd::Unmounted
    } else {
        ServeEnd::Stopped
    };
    daemon.save_snapshot_if_due();
    daemon.store.flush().map_err(|e| e.to_string())?;
    daemon.store.close();
    // Exit now, dropping nothing: a read in flight would be answered EIO as
    // its task or its reply were dropped. Left unanswered, the keeper has the
    // kernel send it again to the next daemon (or the unmount ends it).
    std::process::exit(crate::mount::keeper::exit_code(end))
}

/// The device number of the file system mounted at `path`, if it answers.
pub(crate) fn device_at(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// Detaches the mount at `path` lazily (MNT_DETACH): it goes from the namespace
/// now and ends when its last open file closes.
pub(crate) fn detach(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return true;
    }
    // Not root: the setuid helper may detach a mount of ours.
    std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// What serves the mount once it is up: origins, change watching, health
/// checks, scans. Dropping it stops them.
struct Serving {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _folder: Option<crate::plugins::manager::FolderWatch>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn start_serving(daemon: &Arc<Daemon>, settings: &MountSettings) -> Serving {
    daemon.start_origins().await;
    let mut tasks = vec![
        daemon.keeper.start(),
        crate::changes::start(daemon),
        crate::origins::health_monitor::start(
            daemon.registry.clone(),
            Duration::from_secs(daemon.config.health.check_interval_secs),
        ),
        daemon.rescan_on_new_origins(),
        daemon.await_other_scans(),
        daemon.publish_changed_indexes(),
        daemon.follow_tier(),
        daemon.retry_incomplete_scans(Duration::from_secs(
            daemon.config.health.check_interval_secs.max(1),
        )),
    ];
    if let Some(tier) = daemon.tier.get() {
        let (view, pins) = (daemon.view.clone(), daemon.pins.clone());
        tasks.push(tier.keep_session(move || {
            crate::pins::keeper::pinned_files(&view.snapshot(), &pins)
                .into_iter()
                .flat_map(|file| file.replicas)
                .collect()
        }));
    }
    let folder = daemon
        .manager
        .watch_folder()
        .map_err(|e| tracing::warn!("cannot watch the plugins folder: {e}"))
        .ok();
    if settings.metrics.is_some() {
        tasks.push(crate::control::metrics::start_sampler(daemon.clone()));
    }
    let first_scan = {
        let daemon = daemon.clone();
        tokio::spawn(async move {
            match daemon.rescan(&Arc::default()).await {
                Ok(report) => log_report(&report),
                Err(e) => tracing::error!("scan failed: {e}"),
            }
        })
    };
    tasks.push(first_scan);
    Serving {
        tasks,
        _folder: folder,
    }
}

/// SIGTERM and SIGINT, noted from the moment they are installed.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (inside a runtime).
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }

    /// Whether either came already.
    fn received(&mut self) -> bool {
        use futures_util::FutureExt;
        self.recv().now_or_never().is_some()
    }
}

/// Returns on Ctrl-C, SIGTERM, or when the session ends (someone ran fusermount -u).
async fn wait_for_stop(session: &fuser::BackgroundSession, stop: &mut StopSignals) {
    let unmounted = async {
        while !session.guard.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        () = stop.recv() => {}
        () = unmounted => {}
    }
}
