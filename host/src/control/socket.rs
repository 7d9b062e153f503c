//! The control socket of a running mount, for `musicfs events` (and the status view).
//!
//! One Unix socket per mount, in a folder only its owner can enter
//! (`$XDG_RUNTIME_DIR/musicfs`, else `/tmp/musicfs-<uid>`, mode 0700; the socket
//! itself 0600). In `/tmp` anyone could have made that folder first, so a folder
//! that is a symlink, belongs to another user or is writable by others is refused
//! (the mount then runs without a socket, and says why), and the files in it are
//! created afresh, never written through a link that someone left there. It is named after a hash of the canonical mountpoint, with a
//! `.mount` file beside it holding the mountpoint's path, so a client finds the
//! socket of a given mount, or of the only running one.
//!
//! Protocol: the client sends one line naming a request, and its argument
//! after a space; `status` answers one JSON object; `events` streams every
//! event of the bus as one JSON object per line until the client hangs up;
//! any other request goes to the mount's [`Requests`] (`pin`, `unpin`, `pins`:
//! see `crate::control::pin_requests`), which answer in JSON lines too.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::telemetry::events::EventBus;

/// The folder holding the control sockets of this user's mounts.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("musicfs"),
        // SAFETY: getuid cannot fail.
        None => PathBuf::from(format!("/tmp/musicfs-{}", unsafe { libc::getuid() })),
    }
}

fn socket_stem(mountpoint: &Path) -> String {
    let canonical = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_owned());
    blake3::hash(canonical.as_os_str().as_encoded_bytes()).to_hex()[..16].to_owned()
}

/// Checks that `dir` is a folder of ours that nobody else can write to (and makes
/// it ours alone if others could only read it).
pub fn check_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "control folder {}: {why}; remove it, or set XDG_RUNTIME_DIR",
                dir.display()
            ),
        ))
    };
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.file_type().is_dir() {
        return refuse("is not a folder (a symlink?)".into());
    }
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    if meta.uid() != me {
        return refuse(format!(
            "belongs to uid {}, not to you (uid {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "others may write to it (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `bytes` to a new file at `path` (mode 0600), replacing what was there
/// without following a symlink in its place.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .write_all(bytes)
}

/// Renders the mount's status as JSON, on request.
pub type StatusSource = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// Where the line ends up: the client's end of the socket.
pub type Out<'a> = &'a mut (dyn tokio::io::AsyncWrite + Unpin + Send);

/// Requests beyond `status` and `events`, answered by their owners.
#[async_trait::async_trait]
pub trait Requests: Send + Sync {
    /// Answers request `name` with `argument` (the rest of its line), writing
    /// JSON lines to `out`. False if it does not know `name`.
    async fn answer(&self, name: &str, argument: &str, out: Out<'_>) -> bool;
}

/// Writes `value` as one JSON line; false if the client is gone.
pub async fn send_line(out: Out<'_>, value: &serde_json::Value) -> bool {
    out.write_all(format!("{value}\n").as_bytes()).await.is_ok()
}

/// Serves the control socket of one mount until dropped (which removes it).
pub struct ControlServer {
    /// The socket and the marker, each with the (device, inode) it was made as:
    /// a newer mount at the same mountpoint replaces both, and this one must not
    /// remove that mount's files when it goes.
    socket: (PathBuf, Option<(u64, u64)>),
    marker: (PathBuf, Option<(u64, u64)>),
    task: tokio::task::JoinHandle<()>,
}

/// The (device, inode) of the file at `path`, not following a link.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Removes `path` if it is still the file that was made there.
fn remove_if_ours((path, made): &(PathBuf, Option<(u64, u64)>)) {
    if made.is_some() && identity(path) == *made {
        let _ = std::fs::remove_file(path);
    }
}

impl ControlServer {
    /// Starts serving for the mount at `mountpoint`; `status` renders the status
    /// as JSON.
    pub fn start(
        mountpoint: &Path,
        events: EventBus,
        status: StatusSource,
        requests: std::sync::Arc<dyn Requests>,
    ) -> std::io::Result<ControlServer> {
        let dir = runtime_dir();
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        check_private(&dir)?;
        let stem = socket_stem(mountpoint);
        let socket = dir.join(format!("{stem}.sock"));
        let marker = dir.join(format!("{stem}.mount"));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        let canonical = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_owned());
        write_new(&marker, canonical.as_os_str().as_encoded_bytes())?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(
                    stream,
                    events.clone(),
                    status.clone(),
                    requests.clone(),
                ));
            }
        });
        Ok(ControlServer {
            socket: (socket.clone(), identity(&socket)),
            marker: (marker.clone(), identity(&marker)),
            task,
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        remove_if_ours(&self.socket);
        remove_if_ours(&self.marker);
    }
}

async fn serve(
    stream: tokio::net::UnixStream,
    events: EventBus,
    status: StatusSource,
    requests: std::sync::Arc<dyn Requests>,
) {
    let (read, mut write) = stream.into_split();
    let mut request = String::new();
    if tokio::io::BufReader::new(read)
        .read_line(&mut request)
        .await
        .is_err()
    {
        return;
    }
    let request = request.trim();
    let (name, argument) = request.split_once(' ').unwrap_or((request, ""));
    match name {
        "status" => {
            let _ = write.write_all(format!("{}\n", status()).as_bytes()).await;
        }
        "events" => {
            let mut rx = events.subscribe();
            loop {
                let line = match rx.recv().await {
                    Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        format!("{{\"event\":\"Lagged\",\"missed\":{n}}}")
                    }
                    Err(_) => return,
                };
                if write
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return; // the client hung up
                }
            }
        }
        other => {
            if !requests.answer(other, argument, &mut write).await {
                let error = serde_json::json!({ "error": format!("unknown request {other:?}") });
                send_line(&mut write, &error).await;
            }
        }
    }
}

/// The control socket of the mount at `mountpoint`, or of the only running mount.
pub fn find_socket(mountpoint: Option<&Path>) -> Result<PathBuf, String> {
    find_mount(mountpoint).map(|(socket, _)| socket)
}

/// The control socket and mountpoint of the mount at `mountpoint`, or of the
/// only running mount.
pub fn find_mount(mountpoint: Option<&Path>) -> Result<(PathBuf, PathBuf), String> {
    let dir = runtime_dir();
    match check_private(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("no running musicfs mount".into())
        }
        Err(e) => return Err(e.to_string()),
        Ok(()) => {}
    }
    if let Some(mountpoint) = mountpoint {
        let socket = dir.join(format!("{}.sock", socket_stem(mountpoint)));
        let canonical = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_owned());
        return if UnixStream::connect(&socket).is_ok() {
            Ok((socket, canonical))
        } else {
            Err(format!(
                "no running musicfs mount at {}",
                mountpoint.display()
            ))
        };
    }
    let mut mounts = running_mounts(&dir);
    match mounts.len() {
        0 => Err("no running musicfs mount".into()),
        1 => Ok(mounts.remove(0)),
        _ => Err(format!(
            "several musicfs mounts are running ({}); choose one with --mount",
            mounts
                .iter()
                .map(|(_, m)| m.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The running mount that `path` (canonical) lies in, if any: (socket,
/// mountpoint).
pub fn mount_holding(path: &Path) -> Option<(PathBuf, PathBuf)> {
    let dir = runtime_dir();
    check_private(&dir).ok()?;
    running_mounts(&dir)
        .into_iter()
        .filter(|(_, mountpoint)| path.starts_with(mountpoint))
        // The innermost, should one mount lie inside another.
        .max_by_key(|(_, mountpoint)| mountpoint.as_os_str().len())
}

/// The running mounts whose sockets are in `dir`: (socket, mountpoint).
fn running_mounts(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut mounts = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "mount") {
            let socket = path.with_extension("sock");
            if UnixStream::connect(&socket).is_err() {
                // Left by a mount that was killed: nobody answers there any more.
                let _ = std::fs::remove_file(&socket);
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let mounted_at = std::fs::read(&path).unwrap_or_default();
            let mounted_at = std::ffi::OsStr::from_bytes(&mounted_at);
            mounts.push((socket, PathBuf::from(mounted_at)));
        }
    }
    mounts
}

/// Sends `request` and copies every line of the answer to `out` until the server
/// closes the connection or `out` fails.
pub fn request(socket: &Path, request: &str, out: &mut dyn Write) -> Result<(), String> {
    request_each(socket, request, |line| {
        Ok(writeln!(out, "{line}").and_then(|_| out.flush()).is_ok())
    })
}

/// Sends `request` and hands every line of the answer to `each` until the
/// server closes the connection or `each` returns false (or an error).
pub fn request_each(
    socket: &Path,
    request: &str,
    mut each: impl FnMut(&str) -> Result<bool, String>,
) -> Result<(), String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if !each(&line)? {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn private_dir(root: &Path) -> PathBuf {
        let dir = root.join("musicfs");
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        dir
    }

    #[test]
    fn a_folder_of_another_user_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = private_dir(root.path());
        // SAFETY: getuid cannot fail.
        let someone_else = if unsafe { libc::getuid() } == 65534 {
            0
        } else {
            65534
        };
        if std::os::unix::fs::chown(&dir, Some(someone_else), None).is_err() {
            eprintln!("skipped: only root can give a folder to another user");
            return;
        }
        let err = check_private(&dir).unwrap_err().to_string();
        assert!(
            err.contains(&format!("belongs to uid {someone_else}")),
            "{err}"
        );
    }

    #[test]
    fn a_folder_others_may_write_to_or_a_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = private_dir(root.path());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_private(&dir).unwrap_err().to_string();
        assert!(err.contains("others may write to it"), "{err}");

        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = check_private(&link).unwrap_err().to_string();
        assert!(err.contains("not a folder"), "{err}");
    }

    #[test]
    fn a_folder_others_may_only_read_becomes_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = private_dir(root.path());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_private(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn the_marker_is_never_written_through_a_symlink() {
        let root = tempfile::tempdir().unwrap();
        let dir = private_dir(root.path());
        let victim = root.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let marker = dir.join("x.mount");
        std::os::unix::fs::symlink(&victim, &marker).unwrap();
        write_new(&marker, b"/mnt/music").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&marker)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&marker).unwrap(), b"/mnt/music");
        assert_eq!(std::fs::metadata(&marker).unwrap().mode() & 0o777, 0o600);
    }
}
