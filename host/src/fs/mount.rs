//! `musicfs mount`: the daemon plus a FUSE session, until unmounted or interrupted.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::MountOption;

use crate::config::origin_flags::parse_origin_flag;
use crate::control::socket::ControlServer;
use crate::daemon::{load_config, log_report, Daemon, DaemonOptions};
use crate::fs::fuse::MusicFs;
use crate::fs::mount_helper::Ready;
use crate::fs::mountpoint::check_mountpoint;
use crate::library::sample;

/// FUSE threads: reads from the cache are served on them.
const FUSE_THREADS: usize = 4;

/// How the mount is made, beyond what the daemon needs.
#[derive(Debug, Clone, Default)]
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

/// Mounts and serves until Ctrl-C, SIGTERM or an external unmount. `ready`
/// hears once the mount is up.
pub fn run(
    options: DaemonOptions,
    mountpoint: &Path,
    settings: &MountSettings,
    ready: &mut Ready,
) -> Result<(), String> {
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
    check_mountpoint(mountpoint)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("musicfs")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    // From here on SIGTERM and SIGINT are noted, not fatal: one that comes
    // while the daemon starts (before the mount, or while origins open) ends
    // it in order, and no mount is left behind.
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
    let mut fuse_config = fuser::Config::default();
    fuse_config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("musicfs".into()),
        // fuser mounts by itself as root, with type `fuse` and no subtype:
        // the kernel takes it as an option then, and shows `fuse.musicfs`
        // (what `findmnt -t` and fstab's type name). Otherwise fusermount3 does.
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            MountOption::CUSTOM("subtype=musicfs".into())
        } else {
            MountOption::Subtype("musicfs".into())
        },
        MountOption::NoExec,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    fuse_config.acl = if settings.allow_other {
        fuser::SessionACL::All
    } else if settings.allow_root {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    };
    if settings.default_permissions {
        fuse_config
            .mount_options
            .push(MountOption::DefaultPermissions);
    }
    fuse_config.n_threads = Some(FUSE_THREADS);
    if stop.received() {
        eprintln!("musicfs: stopped before mounting");
        return Ok(());
    }
    let session = fuser::spawn_mount(fs, mountpoint, &fuse_config)
        .map_err(|e| format!("cannot mount {}: {e}", mountpoint.display()))?;
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
    ready.report(&Ok(()));
    eprintln!(
        "musicfs: mounted on {} (Ctrl-C to unmount)",
        mountpoint.display()
    );

    runtime.block_on(async {
        let status: crate::control::socket::StatusSource = {
            let (daemon, shown) = (daemon.clone(), mountpoint.display().to_string());
            Arc::new(move || {
                serde_json::to_string(&crate::control::status::status_of(&daemon, &shown))
                    .unwrap_or_default()
            })
        };
        let requests = Arc::new(crate::pins::requests::PinRequests {
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
        drop(running);
    });

    let mut how = "unmounted";
    let still_ours = ours.is_some() && device_at(mountpoint) == ours;
    if session.guard.is_finished() || !still_ours {
        // Unmounted from outside (fusermount3 -u), and perhaps mounted again by
        // someone else since: the session would unmount by path when dropped,
        // taking down what is there now. Leave it be; exiting closes our end.
        how = "was unmounted from outside";
        std::mem::forget(session);
    } else if let Err(e) = session.umount_and_join() {
        // Files are still open in the mount (a player, a shell inside it).
        // Detach it now; the kernel finishes when the last file closes, instead
        // of leaving a dead mountpoint behind when this process exits.
        tracing::warn!("unmount: {e}; detaching it lazily");
        how = if device_at(mountpoint) == ours && detach(mountpoint) {
            "detached (files were still open)"
        } else {
            "could not be unmounted; clear it with fusermount3 -u -z"
        };
    }
    daemon.store.flush().map_err(|e| e.to_string())?;
    eprintln!("musicfs: {} {how}", mountpoint.display());
    Ok(())
}

/// The device number of the file system mounted at `path`, if it answers.
fn device_at(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// Detaches the mount at `path` lazily (MNT_DETACH): it goes from the namespace
/// now and ends when its last open file closes.
fn detach(path: &Path) -> bool {
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
        crate::library::change_feed::start(daemon),
        crate::origins::health_monitor::start(
            daemon.registry.clone(),
            Duration::from_secs(daemon.config.health.check_interval_secs),
        ),
        daemon.rescan_on_new_origins(),
        daemon.retry_incomplete_scans(Duration::from_secs(
            daemon.config.health.check_interval_secs.max(1),
        )),
    ];
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
