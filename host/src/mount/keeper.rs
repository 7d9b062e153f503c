//! The keeper: the process that holds a mount while others serve it.
//!
//! `musicfs mount` mounts by itself (`mount::device`), keeps the FUSE device, and
//! runs the daemon as a child (`musicfs serve-mount`, the same executable) that
//! serves the mount on a copy of the device. The kernel's connection lives as
//! long as any process holds the device, so when the daemon dies the mount
//! does not: requests wait in the kernel instead of failing with ENOTCONN. The
//! keeper has the kernel queue again the requests the dead one had read and
//! not answered (`FUSE_NOTIFY_RESEND`, before anyone reads again, so none is
//! read twice), then starts another daemon, which loads the same index and
//! tree (same inode numbers) and is handed the kernel's INIT to answer. The same
//! path upgrades: SIGHUP (`systemctl reload`) stops the daemon in order and
//! starts the executable now on disk in its place.
//!
//! The keeper does nothing else, so there is little in it to crash: no
//! plugin, no cache, no runtime of more than one thread. SIGTERM or SIGINT
//! stops the daemon, then unmounts. A daemon that cannot start (a broken
//! upgrade) is tried again with a pause; after [`START_FAILURES`] failures in a
//! row the keeper gives up and unmounts. If the keeper itself is killed, the
//! daemon is killed with it (`PR_SET_PDEATHSIG`) and the mount dies as any
//! FUSE mount whose server is gone.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::daemon::DaemonOptions;
use crate::mount::device::{self, Handshake, MountRequest};
use crate::mount::helper::Ready;
use crate::mount::serve::{detach, MountSettings, ServeEnd};

/// The hidden subcommand a serving daemon runs.
pub const SERVE_COMMAND: &str = "serve-mount";
/// The environment variable carrying what the daemon serves ([`ServeArgs`]).
pub const SERVE_ENV: &str = "MUSICFS_SERVE";
/// The device and the handshake socket, in the daemon.
const DEVICE_FD: RawFd = 3;
const HANDSHAKE_FD: RawFd = 4;
/// The daemon's exit code when the mount went away under it.
const EXIT_UNMOUNTED: i32 = 3;
/// Daemons that fail to start in a row before the keeper gives up.
pub const START_FAILURES: u32 = 5;
/// The pause before starting a daemon again after one died.
pub const RESTART_PAUSE: Duration = Duration::from_millis(100);

/// What the keeper tells the daemon it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServeArgs {
    pub options: DaemonOptions,
    pub mountpoint: PathBuf,
    pub settings: MountSettings,
}

/// In the daemon: serves what [`SERVE_ENV`] says on the descriptors the
/// keeper passed; the exit code tells the keeper how it ended.
pub fn serve_for_keeper() -> i32 {
    let args: ServeArgs = match std::env::var(SERVE_ENV)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(args) => args,
        Err(e) => {
            eprintln!("musicfs: serve-mount is started by `musicfs mount` ({e})");
            return 2;
        }
    };
    // SAFETY: the keeper passes the device and the socket as these two
    // descriptors, and nothing else in this process owns them.
    let (device, handshake) = unsafe {
        (
            OwnedFd::from_raw_fd(DEVICE_FD),
            OwnedFd::from_raw_fd(HANDSHAKE_FD),
        )
    };
    for fd in [DEVICE_FD, HANDSHAKE_FD] {
        // SAFETY: fcntl on our own descriptors: not passed on to plugins.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    match crate::mount::serve::serve(
        args.options,
        &args.mountpoint,
        &args.settings,
        device,
        handshake,
    ) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("musicfs: {e}");
            1
        }
    }
}

/// The daemon's exit code for how it ended.
pub fn exit_code(end: ServeEnd) -> i32 {
    match end {
        ServeEnd::Stopped => 0,
        ServeEnd::Unmounted => EXIT_UNMOUNTED,
    }
}

/// One daemon the keeper started.
struct Daemon {
    child: tokio::process::Child,
}

/// Mounts `mountpoint` and keeps it served until stopped or unmounted.
pub fn keep(
    options: DaemonOptions,
    mountpoint: &Path,
    settings: &MountSettings,
    ready: &mut Ready,
) -> Result<(), String> {
    // The executable as it is on disk now: an upgrade replaces that file, and
    // a daemon started after it runs the new one.
    let executable =
        std::env::current_exe().map_err(|e| format!("cannot find the musicfs executable: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let _in_runtime = runtime.enter();
    let mut signals = Signals::install().map_err(|e| format!("cannot handle signals: {e}"))?;
    let request = MountRequest {
        allow_other: settings.allow_other,
        allow_root: settings.allow_root,
        default_permissions: settings.default_permissions,
    };
    let device = device::mount(mountpoint, &request)
        .map_err(|e| format!("cannot mount {}: {e}", mountpoint.display()))?;
    let init = match device::read_init(&device) {
        Ok(init) => init,
        Err(e) => {
            take_down(mountpoint);
            return Err(format!("the kernel did not start the mount: {e}"));
        }
    };
    let args = ServeArgs {
        options,
        mountpoint: mountpoint.to_owned(),
        settings: settings.clone(),
    };
    let outcome = runtime.block_on(keep_serving(
        &executable,
        &args,
        &device,
        &init,
        &mut signals,
        ready,
    ));
    match outcome {
        Kept::Unmounted => {
            eprintln!(
                "musicfs: {} was unmounted from outside",
                mountpoint.display()
            );
            Ok(())
        }
        Kept::Stop(why) => {
            let how = take_down(mountpoint);
            drop(device);
            match why {
                None => {
                    eprintln!("musicfs: {} {how}", mountpoint.display());
                    Ok(())
                }
                Some(e) => Err(format!("{e}; {} {how}", mountpoint.display())),
            }
        }
    }
}

/// How keeping ended.
enum Kept {
    /// Take the mount down, because of an error if any.
    Stop(Option<String>),
    /// It is gone already.
    Unmounted,
}

async fn keep_serving(
    executable: &Path,
    args: &ServeArgs,
    device: &OwnedFd,
    init: &[u8],
    signals: &mut Signals,
    ready: &mut Ready,
) -> Kept {
    let mut answered: Option<Vec<u8>> = None;
    let mut failures = 0;
    loop {
        if answered.is_some() {
            // The last daemon is gone: the requests it read and never
            // answered go back to the queue, for the new one to read. Sent
            // before the new one reads anything, so no request is read twice.
            if let Err(e) = device::resend(device) {
                tracing::warn!(
                    "cannot ask the kernel to send unanswered requests again ({e}); they fail"
                );
            }
        }
        let (mut daemon, reply) = match start(executable, args, device, init).await {
            Ok(started) => started,
            Err(e) => {
                failures += 1;
                if answered.is_none() || failures >= START_FAILURES {
                    ready.report(&Err(e.clone()));
                    return Kept::Stop(Some(e));
                }
                tracing::error!("the daemon did not start ({e}); trying again");
                tokio::time::sleep(RESTART_PAUSE * failures).await;
                continue;
            }
        };
        failures = 0;
        match &answered {
            None => {
                if let Err(e) = device::answer_init(device, &reply) {
                    let _ = daemon.child.kill().await;
                    let e = format!("cannot answer the kernel's INIT: {e}");
                    ready.report(&Err(e.clone()));
                    return Kept::Stop(Some(e));
                }
                answered = Some(reply);
                ready.report(&Ok(()));
                eprintln!(
                    "musicfs: mounted on {} (Ctrl-C to unmount)",
                    args.mountpoint.display()
                );
            }
            Some(first) => {
                if *first != reply {
                    tracing::warn!(
                        "the new daemon answered INIT otherwise than the first; it serves the terms the first agreed"
                    );
                }
                tracing::warn!("a new daemon serves the mount");
            }
        }
        let upgrade = tokio::select! {
            status = daemon.child.wait() => {
                match status {
                    Ok(s) if s.code() == Some(EXIT_UNMOUNTED) => return Kept::Unmounted,
                    Ok(s) if s.success() => {
                        // Stopped by someone else's signal: as if the keeper had been.
                        return Kept::Stop(None);
                    }
                    Ok(s) => tracing::error!("the daemon {}; starting another", describe(s)),
                    Err(e) => tracing::error!("the daemon could not be waited for ({e}); starting another"),
                }
                tokio::time::sleep(RESTART_PAUSE).await;
                false
            }
            signal = signals.next() => match signal {
                Signal::Stop => {
                    stop(&mut daemon).await;
                    return Kept::Stop(None);
                }
                Signal::Upgrade => true,
            },
        };
        if upgrade {
            tracing::warn!(
                "SIGHUP: stopping the daemon to start {}",
                executable.display()
            );
            stop(&mut daemon).await;
        }
    }
}

/// Tells the daemon to stop and waits for it.
async fn stop(daemon: &mut Daemon) {
    if let Some(pid) = daemon.child.id() {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(30), daemon.child.wait())
        .await
        .is_err()
    {
        let _ = daemon.child.kill().await;
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    match status.signal() {
        Some(signal) => format!("was killed by signal {signal}"),
        None => format!("exited with code {}", status.code().unwrap_or(-1)),
    }
}

/// Starts a daemon on `device` and has it answer `init`; its answer.
async fn start(
    executable: &Path,
    args: &ServeArgs,
    device: &OwnedFd,
    init: &[u8],
) -> Result<(Daemon, Vec<u8>), String> {
    let handshake = Handshake::new().map_err(|e| format!("no handshake socket: {e}"))?;
    let json = serde_json::to_string(args).map_err(|e| e.to_string())?;
    let (device_raw, handshake_raw) = (device.as_raw_fd(), handshake.server.as_raw_fd());
    // SAFETY: getpid cannot fail.
    let keeper = unsafe { libc::getpid() };
    let mut command = tokio::process::Command::new(executable);
    command
        .arg0("musicfs")
        .arg(SERVE_COMMAND)
        .env(SERVE_ENV, json)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (fcntl, dup2, prctl, getppid,
    // _exit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let a = libc::fcntl(device_raw, libc::F_DUPFD_CLOEXEC, 10);
            let b = libc::fcntl(handshake_raw, libc::F_DUPFD_CLOEXEC, 10);
            if a < 0 || b < 0 || libc::dup2(a, DEVICE_FD) < 0 || libc::dup2(b, HANDSHAKE_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The daemon goes with the keeper.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != keeper {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", executable.display()))?;
    let mut daemon = Daemon { child };
    drop(handshake.server);
    let init = init.to_vec();
    let keeper_end = handshake.keeper;
    let replay = tokio::task::spawn_blocking(move || device::replay_on(&keeper_end, &init));
    tokio::select! {
        answer = replay => match answer {
            Ok(Ok(reply)) => Ok((daemon, reply)),
            Ok(Err(e)) => {
                let status = daemon.child.wait().await.map(describe).unwrap_or_default();
                Err(format!("the daemon did not answer INIT ({e}; it {status})"))
            }
            Err(e) => Err(format!("handshake task failed: {e}")),
        },
        status = daemon.child.wait() => Err(format!(
            "the daemon {} before it served",
            status.map(describe).unwrap_or_default()
        )),
    }
}

/// Unmounts what is ours at `mountpoint`; says how it went.
fn take_down(mountpoint: &Path) -> &'static str {
    match device::unmount_now(mountpoint) {
        Ok(()) => "unmounted",
        Err(_) if detach(mountpoint) => "detached (files were still open)",
        Err(_) => "could not be unmounted; clear it with fusermount3 -u -z",
    }
}

/// What the keeper listens for.
enum Signal {
    Stop,
    Upgrade,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.interrupt.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Upgrade,
        }
    }
}
