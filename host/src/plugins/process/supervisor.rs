//! One plugin's process, kept running: started, watched, restarted.

use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use origin_api::{Origin, OriginError, OriginResult, PluginInfo, Settings};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::child::{LOG_LEVEL_ENV, SOCKET_FD};
use super::connection::{read_loop, Connection};
use super::remote_origin::{RemoteOrigin, RemoteState};
use super::wire::{self, ToHost};

/// The hidden subcommand a plugin process runs.
pub const PLUGIN_HOST_COMMAND: &str = "plugin-host";

/// The first pause before a restart; it doubles up to [`MAX_BACKOFF`] while
/// the process keeps failing, and starts again once it stayed up [`STABLE`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
pub const STABLE: Duration = Duration::from_secs(60);
/// How often the host pings, and how long a ping may go unanswered.
const PING_EVERY: Duration = Duration::from_millis(500);
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a process that is told to stop may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How plugin processes are run.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// The `musicfs` executable, run as `musicfs plugin-host LIBRARY`.
    pub executable: PathBuf,
    /// How long a process may take to load its plugin, and an origin to open
    /// again after a restart.
    pub start_deadline: Duration,
    /// A process whose calls are given up at their deadline and that answers
    /// none for this long is stuck: it is killed and started again.
    pub hang_after: Duration,
    /// The address space a plugin process may have (`RLIMIT_AS`), if limited.
    pub memory_limit: Option<u64>,
    /// Confine the process (see `super::sandbox`).
    pub sandbox: bool,
    /// Load plugins into the daemon instead (see `crate::plugins::running`).
    pub in_process: bool,
}

impl ProcessOptions {
    /// Options for plugins whose calls have `call_deadline`, run by this
    /// executable (`/proc/self/exe`, which stays the running image even when
    /// the file is replaced by an upgrade).
    pub fn new(call_deadline: Duration) -> Self {
        ProcessOptions {
            executable: PathBuf::from("/proc/self/exe"),
            start_deadline: call_deadline.max(Duration::from_secs(10)),
            hang_after: (call_deadline * 2).max(Duration::from_secs(2)),
            memory_limit: None,
            sandbox: true,
            in_process: false,
        }
    }

    /// The same, run by `executable`.
    pub fn with_executable(mut self, executable: PathBuf) -> Self {
        self.executable = executable;
        self
    }
}

/// What `musicfs status` shows of a plugin's process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProcessReport {
    /// The running process, if one runs.
    pub pid: Option<u32>,
    /// Times it was started again after it went away.
    pub restarts: u64,
    /// How the last one went, e.g. "was killed by signal 6 (SIGABRT)".
    pub last_exit: Option<String>,
}

/// A plugin running in a process of its own.
pub struct PluginProcess {
    library: PathBuf,
    options: ProcessOptions,
    info: PluginInfo,
    api_version: String,
    rustc_version: String,
    current: Mutex<Option<Arc<Connection>>>,
    generation: AtomicU64,
    origins: Mutex<Vec<Weak<RemoteState>>>,
    report: Mutex<ProcessReport>,
    stopping: AtomicBool,
    stop: Notify,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One started process.
struct Running {
    child: tokio::process::Child,
    conn: Arc<Connection>,
    reader: JoinHandle<String>,
    last_words: Arc<Mutex<Option<String>>>,
    stderr: JoinHandle<()>,
    ready: (PluginInfo, String, String),
}

impl PluginProcess {
    /// Starts a process that loads `library`. Fails as loading in process
    /// failed (the same one-line reasons), or with how the process ended.
    pub async fn start(library: &Path, options: ProcessOptions) -> Result<Arc<Self>, String> {
        let name = library
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let running = spawn(library, &options, 1, &name).await?;
        let (info, api_version, rustc_version) = running.ready.clone();
        let process = Arc::new(PluginProcess {
            library: library.to_owned(),
            options,
            info,
            api_version,
            rustc_version,
            current: Mutex::new(Some(running.conn.clone())),
            generation: AtomicU64::new(1),
            origins: Mutex::default(),
            report: Mutex::new(ProcessReport {
                pid: running.child.id(),
                ..ProcessReport::default()
            }),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            supervisor: Mutex::new(None),
        });
        let task = tokio::spawn(process.clone().supervise(running));
        *lock(&process.supervisor) = Some(task);
        Ok(process)
    }

    /// Kind, version, class.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The `origin-api` version it was built against.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The compiler that built it.
    pub fn rustc_version(&self) -> &str {
        &self.rustc_version
    }

    /// Its process: pid, restarts, how the last one ended.
    pub fn report(&self) -> ProcessReport {
        lock(&self.report).clone()
    }

    /// Opens one origin of this plugin's kind. The origin outlives restarts of
    /// the process: each new process opens it again.
    pub async fn open(self: &Arc<Self>, settings: Settings) -> OriginResult<Arc<dyn Origin>> {
        let settings_text = toml::to_string(settings.table())
            .map_err(|e| OriginError::invalid_config(e.to_string()))?;
        let state = Arc::new(RemoteState::new(
            settings.origin_id().to_owned(),
            settings_text,
        ));
        state.session(self).await?;
        {
            let mut origins = lock(&self.origins);
            origins.retain(|o| o.strong_count() > 0);
            origins.push(Arc::downgrade(&state));
        }
        Ok(Arc::new(RemoteOrigin::new(self.clone(), state)))
    }

    /// The connection to the running process, or why there is none.
    pub(super) fn connection(&self) -> OriginResult<Arc<Connection>> {
        if let Some(conn) = lock(&self.current).as_ref() {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
        }
        let last = lock(&self.report).last_exit.clone().unwrap_or_default();
        Err(OriginError::unavailable(format!(
            "plugin `{}` is restarting (its process {last})",
            self.info.kind
        )))
    }

    /// Stops the process (its plugin's runtime first) and stops restarting it.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
        let task = lock(&self.supervisor).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    async fn supervise(self: Arc<Self>, mut running: Running) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let Some(why) = self.watch(&mut running).await else {
                return;
            };
            let why = format!("of `{}` {why}", self.info.kind);
            running.conn.close(&format!("plugin process {why}"));
            {
                let mut report = lock(&self.report);
                report.pid = None;
                report.last_exit = Some(why.clone());
            }
            if started.elapsed() > STABLE {
                backoff = FIRST_BACKOFF;
            }
            tracing::error!(plugin = %self.info.kind, "plugin process {why}; starting it again in {} ms", backoff.as_millis());
            running = loop {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = self.stopped() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                match spawn(&self.library, &self.options, generation, &self.info.kind).await {
                    Ok(running) => break running,
                    Err(e) => {
                        tracing::error!(plugin = %self.info.kind, "plugin process did not start again: {e}; next try in {} ms", backoff.as_millis());
                        lock(&self.report).last_exit = Some(e);
                    }
                }
            };
            {
                let mut report = lock(&self.report);
                report.pid = running.child.id();
                report.restarts += 1;
            }
            *lock(&self.current) = Some(running.conn.clone());
            tracing::warn!(plugin = %self.info.kind, "plugin process started again");
            // Open the origins again now, rather than on their next call.
            let me = self.clone();
            tokio::spawn(async move {
                let states: Vec<Arc<RemoteState>> =
                    lock(&me.origins).iter().filter_map(Weak::upgrade).collect();
                for state in states {
                    let opened =
                        tokio::time::timeout(me.options.start_deadline, state.session(&me)).await;
                    match opened {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(plugin = %me.info.kind, origin = %state.origin_id(), "cannot open again after the restart: {e}")
                        }
                        Err(_) => {
                            tracing::warn!(plugin = %me.info.kind, origin = %state.origin_id(), "opening again after the restart took longer than {} s; its next call tries again", me.options.start_deadline.as_secs())
                        }
                    }
                }
            });
        }
    }

    /// Resolves once `shutdown` was called.
    async fn stopped(&self) {
        let notified = self.stop.notified();
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        notified.await
    }

    /// Waits until the process is gone (killing it if it is stuck); how it
    /// went, or `None` when the host stopped it.
    async fn watch(&self, running: &mut Running) -> Option<String> {
        let conn = running.conn.clone();
        let watchdog = async {
            let mut seq = 0;
            loop {
                tokio::time::sleep(PING_EVERY).await;
                if let Some(why) = conn.stuck(PING_TIMEOUT, self.options.hang_after) {
                    return why;
                }
                seq += 1;
                conn.ping(seq);
            }
        };
        let why = tokio::select! {
            status = running.child.wait() => {
                exited(status, running).await
            }
            socket = &mut running.reader => {
                let socket = socket.unwrap_or_else(|e| e.to_string());
                match tokio::time::timeout(Duration::from_secs(2), running.child.wait()).await {
                    Ok(status) => exited(status, running).await,
                    Err(_) => {
                        let _ = running.child.kill().await;
                        format!("{socket} and was killed")
                    }
                }
            }
            verdict = watchdog => {
                let _ = running.child.kill().await;
                format!("{verdict}; it was killed")
            }
            () = self.stopped() => {
                conn.hang_up();
                if tokio::time::timeout(STOP_GRACE, running.child.wait()).await.is_err() {
                    let _ = running.child.kill().await;
                }
                conn.close("plugin stopped");
                return None;
            }
        };
        running.reader.abort();
        Some(why)
    }
}

/// How a process ended, with the last line it wrote to stderr.
async fn exited(status: std::io::Result<ExitStatus>, running: &mut Running) -> String {
    let _ = tokio::time::timeout(Duration::from_secs(1), &mut running.stderr).await;
    let last_words = lock(&running.last_words).take();
    let how = match status {
        Ok(status) => describe(status),
        Err(e) => format!("could not be waited for ({e})"),
    };
    match last_words {
        Some(words) => format!("{how}: {words}"),
        None => how,
    }
}

fn describe(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = match signal {
            libc::SIGABRT => "SIGABRT",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGBUS => "SIGBUS",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL, perhaps the kernel's OOM killer",
            libc::SIGTERM => "SIGTERM",
            _ => "",
        };
        format!("was killed by signal {signal} ({name})")
    } else {
        format!("exited with code {}", status.code().unwrap_or(-1))
    }
}

/// A line of a backtrace or its notes: not what a process died of.
fn backtrace_chatter(line: &str) -> bool {
    line.trim().is_empty()
        || line.starts_with(char::is_whitespace)
        || line.starts_with("note: ")
        || line.starts_with("stack backtrace:")
        || line.starts_with("skipping backtrace printing")
}

/// The host's log level as the child understands it.
fn log_level() -> u8 {
    wire::filter_number(tracing::level_filters::LevelFilter::current())
}

/// Waits a moment for a process that is ending, then kills it.
async fn end(child: &mut tokio::process::Child) -> std::io::Result<ExitStatus> {
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = child.kill().await;
            child.wait().await
        }
    }
}

/// Starts a process for `library` and waits until its plugin is loaded.
async fn spawn(
    library: &Path,
    options: &ProcessOptions,
    generation: u64,
    name: &str,
) -> Result<Running, String> {
    let (host_end, child_end) =
        std::os::unix::net::UnixStream::pair().map_err(|e| format!("no socket pair: {e}"))?;
    let child_fd = child_end.as_raw_fd();
    let mut command = tokio::process::Command::new(&options.executable);
    command
        // `ps` shows `musicfs plugin-host LIBRARY`, not `/proc/self/exe …`.
        .arg0("musicfs")
        .arg(PLUGIN_HOST_COMMAND)
        .arg(library)
        .env(LOG_LEVEL_ENV, log_level().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Out of the terminal's process group: Ctrl-C reaches the host, which
        // stops its plugins in order.
        .process_group(0)
        .kill_on_drop(true);
    if options.sandbox {
        command.env(super::sandbox::SANDBOX_ENV, "1");
    }
    let memory_limit = options.memory_limit;
    // The pool pieces come through; without it, they come through the socket.
    let (pool, pool_fd) = match super::pieces::Pool::create() {
        Ok((pool, fd)) => (Some(pool), Some(fd)),
        Err(e) => {
            tracing::warn!(plugin = %name, "no shared pool for reads ({e}); they go through the socket");
            (None, None)
        }
    };
    let pool_raw = pool_fd.as_ref().map(|fd| fd.as_raw_fd());
    // SAFETY: only async-signal-safe calls (fcntl, dup2, close_range, open,
    // write, close, setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // Out of the way first: either could sit on 3 or 4.
            let socket = libc::fcntl(child_fd, libc::F_DUPFD_CLOEXEC, 10);
            let pool = pool_raw.map(|fd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10));
            if socket < 0 || pool.is_some_and(|fd| fd < 0) {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 leaves the new descriptors open across exec.
            if libc::dup2(socket, SOCKET_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(pool) = pool {
                if libc::dup2(pool, super::pieces::POOL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Nothing else of the host's crosses exec (the FUSE device above all).
            libc::syscall(
                libc::SYS_close_range,
                super::pieces::POOL_FD as u32 + 1,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            // When memory runs out, the kernel takes a plugin before the host.
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                libc::write(fd, b"1000".as_ptr().cast(), 4);
                libc::close(fd);
            }
            if let Some(bytes) = memory_limit {
                let limit = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                libc::setrlimit(libc::RLIMIT_AS, &limit);
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", options.executable.display()))?;
    drop(child_end);
    drop(pool_fd);
    let last_words: Arc<Mutex<Option<String>>> = Arc::default();
    let stderr = {
        let (pipe, last_words, name) = (child.stderr.take(), last_words.clone(), name.to_owned());
        tokio::spawn(async move {
            let Some(pipe) = pipe else { return };
            let mut lines = tokio::io::BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(target: "musicfs::plugin", plugin = %name, "{line}");
                if !backtrace_chatter(&line) {
                    *lock(&last_words) = Some(line);
                }
            }
        })
    };
    host_end
        .set_nonblocking(true)
        .map_err(|e| format!("socket: {e}"))?;
    let socket = tokio::net::UnixStream::from_std(host_end).map_err(|e| format!("socket: {e}"))?;
    let (mut input, output) = socket.into_split();
    // Until it is ready, the plugin's constructor may log.
    let first = tokio::time::timeout(options.start_deadline, async {
        loop {
            match wire::read_frame::<_, ToHost>(&mut input).await {
                Ok(Some((
                    ToHost::Log {
                        level,
                        module,
                        message,
                    },
                    _,
                ))) => super::connection::log(name, level, &module, &message),
                other => return other,
            }
        }
    })
    .await;
    let mut running_parts = (child, last_words, stderr);
    let ready = match first {
        Ok(Ok(Some((
            ToHost::Ready {
                info,
                api_version,
                rustc_version,
            },
            _,
        )))) => (PluginInfo::from(info), api_version, rustc_version),
        Ok(Ok(Some((ToHost::LoadFailed { reason }, _)))) => {
            let _ = end(&mut running_parts.0).await;
            return Err(reason);
        }
        Ok(Ok(Some((other, _)))) => {
            let _ = running_parts.0.kill().await;
            return Err(format!("plugin process sent {other:?} before it was ready"));
        }
        Ok(Ok(None)) | Ok(Err(_)) => {
            let status = end(&mut running_parts.0).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut running_parts.2).await;
            let last = lock(&running_parts.1).take();
            let how = status.map_or_else(|e| e.to_string(), describe);
            return Err(match last {
                Some(words) => format!("plugin process {how} while loading: {words}"),
                None => format!("plugin process {how} while loading"),
            });
        }
        Err(_) => {
            let _ = running_parts.0.kill().await;
            return Err(format!(
                "plugin process did not load it within {} s",
                options.start_deadline.as_secs()
            ));
        }
    };
    let (child, last_words, stderr) = running_parts;
    let conn = Connection::new(generation, ready.0.kind.clone(), output, pool);
    let reader = tokio::spawn(read_loop(conn.clone(), input));
    Ok(Running {
        child,
        conn,
        reader,
        last_words,
        stderr,
        ready,
    })
}
