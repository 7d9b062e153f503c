//! A real `musicfs mount` process for a test, unmounted when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{install_plugin, musicfs_binary};

/// A running mount.
pub struct Mounted {
    pub mountpoint: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Mounted {
    /// Mounts with the local plugin and `args` (e.g. `--origin local:DIR`), using
    /// `cache_dir`, and waits until `ready` (a path below the mountpoint) exists.
    pub fn start(work: &Path, cache_dir: &Path, args: &[String], ready: Option<&str>) -> Mounted {
        Self::start_logging(work, cache_dir, args, ready, "info")
    }

    /// [`Mounted::start`] with the daemon's `RUST_LOG` set to `log`.
    pub fn start_logging(
        work: &Path,
        cache_dir: &Path,
        args: &[String],
        ready: Option<&str>,
        log: &str,
    ) -> Mounted {
        Self::start_at(work, &work.join("mnt"), cache_dir, args, ready, log)
    }

    /// [`Mounted::start_logging`] on `mountpoint` instead of `work/mnt`.
    pub fn start_at(
        work: &Path,
        mountpoint: &Path,
        cache_dir: &Path,
        args: &[String],
        ready: Option<&str>,
        log: &str,
    ) -> Mounted {
        require_fuse();
        let mountpoint = mountpoint.to_owned();
        let plugins_dir = work.join("plugins");
        std::fs::create_dir_all(&mountpoint).unwrap();
        std::fs::create_dir_all(&plugins_dir).unwrap();
        if !plugins_dir.join("libmusicfs_local.so").exists() {
            install_plugin(&plugins_dir, "musicfs_local");
        }
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log_file = work.join(format!("mount-{n}.log"));
        let child = Command::new(musicfs_binary())
            .arg("mount")
            .arg("--plugins")
            .arg(&plugins_dir)
            .arg("--cache-dir")
            .arg(cache_dir)
            .args(args)
            .arg(&mountpoint)
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_file).unwrap())
            .spawn()
            .unwrap();
        let mounted = Mounted {
            mountpoint,
            child: Some(child),
            log: log_file,
        };
        mounted.wait_until(Duration::from_secs(30), |m| {
            musicfs::mount::mountpoint::is_mounted(&m.mountpoint)
                && ready.is_none_or(|r| m.mountpoint.join(r).exists())
        });
        mounted
    }

    /// Reads the `len` bytes of `rel` sequentially and calls `interrupt` (the
    /// server killed, say) once the first MiB has come: the read must then
    /// fail with `EIO` rather than hang, unless every byte had come already
    /// (read ahead of the interruption by the stream).
    pub fn read_ends_when_interrupted(&self, rel: &str, len: u64, interrupt: impl FnOnce()) {
        use std::io::Read;
        use std::sync::mpsc;
        let (started_tx, started_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let reader_path = self.path(rel);
        let reader = std::thread::spawn(move || {
            let mut file = std::fs::File::open(reader_path).unwrap();
            let mut buf = vec![0u8; 128 << 10];
            let mut total = 0u64;
            let outcome = loop {
                match file.read(&mut buf) {
                    Ok(0) => break Ok(total),
                    Ok(n) => total += n as u64,
                    Err(e) => break Err(e),
                }
                if total >= 1 << 20 {
                    let _ = started_tx.send(());
                }
            };
            let _ = done_tx.send(outcome);
        });
        started_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        interrupt();
        // A hang detector, not a speed bound: the host's deadline ends it first.
        let outcome = done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the read hung after the interruption");
        reader.join().unwrap();
        match outcome {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
            Ok(total) => assert_eq!(total, len),
        }
    }

    /// The mount's status (`musicfs status --json`), `Null` if it cannot say.
    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(musicfs_binary())
            .args(["status", "--json", "--mount"])
            .arg(&self.mountpoint)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// A figure of the mount's shared tier in its status (0 if none).
    pub fn tier_figure(&self, name: &str) -> u64 {
        self.status()["tier"][name].as_u64().unwrap_or(0)
    }

    /// Waits for `condition`, panicking with the daemon's log after `limit`.
    pub fn wait_until(&self, limit: Duration, condition: impl Fn(&Mounted) -> bool) {
        let started = Instant::now();
        while !condition(self) {
            if started.elapsed() > limit {
                panic!(
                    "condition not met within {limit:?}; daemon log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the daemon is still running (not exited, not a zombie).
    pub fn alive(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
                Some(state != 'Z' && state != 'X')
            })
            .unwrap_or(false)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// [`Mounted::log`] without its colours (ANSI escape sequences).
    pub fn plain_log(&self) -> String {
        let log = self.log();
        let mut out = String::with_capacity(log.len());
        let mut chars = log.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // An escape sequence runs to its final letter.
                for end in chars.by_ref() {
                    if end.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// A path below the mountpoint.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// Sends SIGKILL and leaves the mountpoint stale, as a crash would; waits
    /// until the daemon under it (killed with it) is gone too.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let below = crate::bench_support::process_tree(child.id());
            let _ = child.kill();
            let _ = child.wait();
            for pid in below.into_iter().skip(1) {
                // SAFETY: kill(2); the process is gone or one of this test's.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                while std::fs::metadata(format!("/proc/{pid}")).is_ok()
                    && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .unwrap_or_default()
                        .contains(") Z")
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        // Skip Drop's clean-up: the stale mount is the point.
        std::mem::forget(self);
    }

    /// Waits for the daemon to exit by itself (its mount was taken away), then
    /// leaves the mountpoint alone: whatever is mounted there now is not ours.
    pub fn wait_for_exit(mut self, limit: Duration) -> String {
        if let Some(mut child) = self.child.take() {
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if started.elapsed() > limit {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the daemon did not exit within {limit:?}:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let log = self.log();
        std::mem::forget(self);
        log
    }

    /// Interrupts the daemon (Ctrl-C) and waits for it to unmount and exit.
    pub fn stop(mut self) -> String {
        self.interrupt();
        self.log()
    }

    fn interrupt(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) with a pid we own.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Never leave a mount behind, whatever happened to the daemon.
        if musicfs::mount::mountpoint::is_mounted(&self.mountpoint) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// Fails the test at once, saying why, where it could not mount: these tests
/// mount for real (root, or a usable `/dev/fuse` and `fusermount3`). They
/// never pass without mounting. The unit and model tests need neither (see
/// the README's Tests).
pub fn require_fuse() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse");
    let helper = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join("fusermount3"))
                .is_ok_and(|m| m.permissions().mode() & 0o4000 != 0)
        })
    });
    match (device, root || helper) {
        (Ok(_), true) => {}
        (Err(e), _) => panic!(
            "this test mounts for real and cannot open /dev/fuse ({e}): run it as root, or \
             where /dev/fuse is usable (the unit and model tests need no FUSE: see the README's Tests)"
        ),
        (Ok(_), false) => panic!(
            "this test mounts for real: not root, and no setuid fusermount3 on PATH \
             (install the fuse3 package, or run as root)"
        ),
    }
}
