//! The control socket of a running mount, for `musicfs events` (and the status view).
//!
//! One Unix socket per mount, in a folder only its owner can enter
//! (`$XDG_RUNTIME_DIR/musicfs`, else `/tmp/musicfs-<uid>`, mode 0700; the socket
//! itself 0600). It is named after a hash of the canonical mountpoint, with a
//! `.mount` file beside it holding the mountpoint's path, so a client finds the
//! socket of a given mount, or of the only running one.
//!
//! Protocol: the client sends one line naming a request; `status` answers one JSON
//! object; `events` streams every event of the bus as one JSON object per line
//! until the client hangs up.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::control::events::EventBus;

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

/// Renders the mount's status as JSON, on request.
pub type StatusSource = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// Serves the control socket of one mount until dropped (which removes it).
pub struct ControlServer {
    socket: PathBuf,
    marker: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// Starts serving for the mount at `mountpoint`; `status` renders the status
    /// as JSON.
    pub fn start(
        mountpoint: &Path,
        events: EventBus,
        status: StatusSource,
    ) -> std::io::Result<ControlServer> {
        let dir = runtime_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let stem = socket_stem(mountpoint);
        let socket = dir.join(format!("{stem}.sock"));
        let marker = dir.join(format!("{stem}.mount"));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        let canonical = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_owned());
        std::fs::write(&marker, canonical.as_os_str().as_encoded_bytes())?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, events.clone(), status.clone()));
            }
        });
        Ok(ControlServer {
            socket,
            marker,
            task,
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.marker);
    }
}

async fn serve(stream: tokio::net::UnixStream, events: EventBus, status: StatusSource) {
    let (read, mut write) = stream.into_split();
    let mut request = String::new();
    if tokio::io::BufReader::new(read)
        .read_line(&mut request)
        .await
        .is_err()
    {
        return;
    }
    match request.trim() {
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
            let _ = write
                .write_all(format!("{{\"error\":\"unknown request {other:?}\"}}\n").as_bytes())
                .await;
        }
    }
}

/// The control socket of the mount at `mountpoint`, or of the only running mount.
pub fn find_socket(mountpoint: Option<&Path>) -> Result<PathBuf, String> {
    let dir = runtime_dir();
    if let Some(mountpoint) = mountpoint {
        let socket = dir.join(format!("{}.sock", socket_stem(mountpoint)));
        return if UnixStream::connect(&socket).is_ok() {
            Ok(socket)
        } else {
            Err(format!(
                "no running musicfs mount at {}",
                mountpoint.display()
            ))
        };
    }
    let mut mounts = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "mount") {
            let socket = path.with_extension("sock");
            if UnixStream::connect(&socket).is_err() {
                // Left by a mount that was killed: nobody answers there any more.
                let _ = std::fs::remove_file(&socket);
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let mounted_at = std::fs::read_to_string(&path).unwrap_or_default();
            mounts.push((socket, mounted_at));
        }
    }
    match mounts.len() {
        0 => Err("no running musicfs mount".into()),
        1 => Ok(mounts.remove(0).0),
        _ => Err(format!(
            "several musicfs mounts are running ({}); choose one with --mount",
            mounts
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Sends `request` and copies every line of the answer to `out` until the server
/// closes the connection or `out` fails.
pub fn request(socket: &Path, request: &str, out: &mut dyn Write) -> Result<(), String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
