//! One SSH connection with its SFTP session: connect (with a deadline), check
//! the host key, log in (key file, agent, password, in that order of what is
//! configured), open the `sftp` subsystem and learn the server's largest read.
//!
//! Failures say which of the three things went wrong, as health reasons do:
//! "unreachable", "host key mismatch", "authentication failed". The whole of
//! it has one deadline, `request_timeout_secs`.
//!
//! Each request then has that deadline too ([`Connection::call`]); the
//! connection notes when it last heard from the server, so that a request
//! that waited behind other data on a busy slow link does not condemn a live
//! connection (see `errors`).
//!
//! At most [`MAX_OPEN_HANDLES`] files and folders are open at once on one
//! connection ([`Connection::open_handle`]): russh-sftp keeps a handle as a
//! `String` and decodes it lossily, while OpenSSH's handles are their number
//! as four big-endian bytes, numbered from 0 and reused. With 129 open, the
//! 129th is `00 00 00 80`, which comes back as `00 00 00 EF BF BD`: the server
//! finds no such handle and answers `FAILURE` to every request on it, its
//! `CLOSE` included, so it also stays open on the server for good. Kept to 128
//! open, every handle is ASCII.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use origin_api::{ErrorKind, OriginError, OriginResult};
use russh::client::{self, Handle};
use russh::keys::{load_secret_key, PrivateKeyWithHashAlg};
use russh::{cipher, Preferred};
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::RawSftpSession;
use std::borrow::Cow;

use crate::errors::{is_answer, origin_error, Broken};
use crate::host_key::Checker;
use crate::sftp_settings::SftpSettings;

/// The largest read asked of a server that does not say (OpenSSH's own
/// client uses 32 KiB).
const DEFAULT_READ: u32 = 32 << 10;
/// The largest read asked at all: what OpenSSH's server answers, and what
/// fits russh-sftp's 256 KiB packets with their header.
const MAX_READ: u32 = 261_120;
/// russh-sftp's own timeout on every request, behind the deadlines set here:
/// a read waits on its stream's progress instead (see `reading`).
const BACKSTOP: u32 = 4;
/// The most files and folders open at once on one connection (fewer if the
/// server says so): OpenSSH numbers handles from 0, taking a new number only
/// when every one it has is in use, so with at most 128 open each handle's
/// four bytes are below 128, which russh-sftp's `String` handles keep intact.
const MAX_OPEN_HANDLES: u64 = 128;

/// AES-GCM first: with AES instructions (any x86-64 or ARMv8 server of the
/// last decade) it costs the server, often a small NAS, least per byte; then
/// russh's own order.
const CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// A logged-in connection and its SFTP session.
pub(crate) struct Connection {
    ssh: Handle<Checker>,
    pub(crate) sftp: RawSftpSession,
    /// The largest read the server answers whole.
    pub(crate) max_read: u32,
    /// Set by the first error that condemns the connection.
    broken: AtomicBool,
    pub(crate) deadline: Duration,
    opened: Instant,
    /// When the server last answered anything, in ms since `opened`.
    heard_ms: AtomicU64,
    /// One permit per handle the server may hold open: taken before an
    /// `OPEN`/`OPENDIR` is sent, given back once its `CLOSE` is answered (or
    /// the open refused); kept for good when the server may still hold it.
    handles: Arc<Semaphore>,
    /// How many handles it may hold at most.
    max_handles: u64,
    /// Permits given up for good (see [`Connection::lose_permit`]).
    lost_handles: AtomicU64,
}

impl Connection {
    /// Connects to the server `settings` name.
    pub(crate) async fn open(settings: &SftpSettings) -> OriginResult<Connection> {
        let (host, port) = (settings.host.as_str(), settings.port);
        let verdict = Arc::new(Mutex::new(None));
        let checker = Checker {
            host: host.to_owned(),
            port,
            known_hosts: settings.known_hosts.clone(),
            pin: settings.host_key_fingerprint.clone(),
            verdict: verdict.clone(),
        };
        let config = Arc::new(client::Config {
            // A dead link ends the session after about a minute; each request
            // has its own deadline besides.
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            inactivity_timeout: None,
            nodelay: true,
            window_size: 8 << 20,
            preferred: Preferred {
                cipher: Cow::Borrowed(CIPHERS),
                ..Preferred::default()
            },
            ..Default::default()
        });
        let deadline = tokio::time::Instant::now() + settings.request_timeout;
        let secs = settings.request_timeout.as_secs();
        let connecting = client::connect(config, (host, port), checker);
        let mut ssh = match tokio::time::timeout_at(deadline, connecting).await {
            Err(_) => {
                return Err(OriginError::timeout(format!(
                    "unreachable: {host}:{port} did not answer within {secs} s"
                )))
            }
            Ok(Err(e)) => {
                let refused = verdict
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .and_then(|v| v.refusal(host, port, &settings.known_hosts));
                return Err(match refused {
                    Some(line) => OriginError::permission_denied(line),
                    None => OriginError::unavailable(format!("unreachable: {host}:{port}: {e}")),
                });
            }
            Ok(Ok(ssh)) => ssh,
        };
        let late = |what: &str| {
            OriginError::timeout(format!(
                "unreachable: {host}:{port}: {what} did not finish within {secs} s"
            ))
        };
        tokio::time::timeout_at(deadline, log_in(&mut ssh, settings))
            .await
            .map_err(|_| late("logging in"))??;
        let (sftp, max_read, max_handles) =
            tokio::time::timeout_at(deadline, open_sftp(&ssh, settings))
                .await
                .map_err(|_| late("starting SFTP"))??;
        Ok(Connection {
            ssh,
            max_read,
            sftp,
            broken: AtomicBool::new(false),
            deadline: settings.request_timeout,
            opened: Instant::now(),
            heard_ms: AtomicU64::new(0),
            handles: Arc::new(Semaphore::new(max_handles as usize)),
            max_handles,
            lost_handles: AtomicU64::new(0),
        })
    }

    /// Opens a file or folder with `opening` (an `OPEN` or `OPENDIR` about
    /// `what`) once fewer than the most handles are open, all within the
    /// deadline; the handle is closed when dropped.
    pub(crate) async fn open_handle(
        self: &Arc<Self>,
        what: &str,
        opening: impl Future<
            Output = Result<russh_sftp::protocol::Handle, russh_sftp::client::error::Error>,
        >,
    ) -> OriginResult<RemoteHandle> {
        // Waiting for a place among the open handles is this side's queue,
        // not the server's silence: it never condemns the connection, and the
        // OPEN then has its own full deadline.
        let permit =
            match tokio::time::timeout(self.deadline, self.handles.clone().acquire_owned()).await {
                Ok(permit) => permit.expect("the handle semaphore is never closed"),
                Err(_) => {
                    return Err(OriginError::timeout(format!(
                        "{what}: {} files already open on this connection for {} s",
                        self.max_handles,
                        self.deadline.as_secs()
                    )))
                }
            };
        match tokio::time::timeout(self.deadline, opening).await {
            Ok(Ok(handle)) => {
                self.heard();
                if handle.handle.contains(char::REPLACEMENT_CHARACTER) {
                    // Not UTF-8: it cannot be sent back, not even to close it.
                    self.lose_permit(permit);
                    return Err(OriginError::other(format!(
                        "{what}: the server gave a handle that is not UTF-8, \
                         which this SFTP client cannot send back"
                    )));
                }
                Ok(RemoteHandle {
                    connection: self.clone(),
                    id: handle.handle,
                    permit: Some(permit),
                })
            }
            // Refused: nothing is open (the permit goes back when dropped).
            Ok(Err(e)) => Err(self.failed(e, what)),
            Err(_) => {
                // The server may yet open it, with no one to close it.
                self.lose_permit(permit);
                Err(self.timed_out(what))
            }
        }
    }

    /// Gives up `permit` for good (a handle the server may still hold open);
    /// once half of them are gone the connection is condemned, so that the
    /// pool replaces it rather than let it shrink to nothing.
    fn lose_permit(&self, permit: OwnedSemaphorePermit) {
        permit.forget();
        let lost = self.lost_handles.fetch_add(1, Ordering::Relaxed) + 1;
        if lost * 2 >= self.max_handles {
            self.condemn(&OriginError::other(format!(
                "{lost} handles may still be open on the server after their deadline"
            )));
        }
    }

    /// Notes that the server answered.
    pub(crate) fn heard(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.heard_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Whether nothing has come back for a whole deadline.
    fn stalled(&self) -> bool {
        let now = self.opened.elapsed().as_millis() as u64;
        let silent = now.saturating_sub(self.heard_ms.load(Ordering::Relaxed));
        Duration::from_millis(silent) >= self.deadline
    }

    fn condemn(&self, why: &OriginError) {
        if !self.broken.swap(true, Ordering::Relaxed) {
            tracing::debug!("sftp connection dropped: {why}");
        }
    }

    /// `request` about `what`, within the deadline.
    pub(crate) async fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, russh_sftp::client::error::Error>>,
    ) -> OriginResult<T> {
        match tokio::time::timeout(self.deadline, request).await {
            Ok(Ok(answer)) => {
                self.heard();
                Ok(answer)
            }
            Ok(Err(e)) => Err(self.failed(e, what)),
            Err(_) => Err(self.timed_out(what)),
        }
    }

    /// A request about `what` got no answer within the deadline.
    pub(crate) fn timed_out(&self, what: &str) -> OriginError {
        let error = OriginError::timeout(format!(
            "unreachable: no answer about {what} within {} s",
            self.deadline.as_secs()
        ));
        if self.stalled() {
            self.condemn(&error);
        }
        error
    }

    /// Whether requests can still be sent: not condemned, not closed.
    pub(crate) fn usable(&self) -> bool {
        !self.broken.load(Ordering::Relaxed) && !self.ssh.is_closed()
    }

    /// `error` from an operation on `what`, as an origin error; a transport
    /// failure condemns the connection, so the pool replaces it.
    pub(crate) fn failed(
        &self,
        error: russh_sftp::client::error::Error,
        what: &str,
    ) -> OriginError {
        if is_answer(&error) {
            self.heard();
        }
        let (error, broken) = origin_error(error, what, self.deadline.as_secs());
        match broken {
            Broken::Yes => self.condemn(&error),
            Broken::IfStalled if self.stalled() => self.condemn(&error),
            _ => {}
        }
        error
    }
}

/// A server-side handle (an open file or folder) from
/// [`Connection::open_handle`], closed when dropped.
pub(crate) struct RemoteHandle {
    connection: Arc<Connection>,
    id: String,
    /// Its place among the connection's open handles, given back once the
    /// server has closed it.
    permit: Option<OwnedSemaphorePermit>,
}

impl RemoteHandle {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for RemoteHandle {
    fn drop(&mut self) {
        let connection = self.connection.clone();
        let id = std::mem::take(&mut self.id);
        let permit = self.permit.take();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No close can be sent from here: the handle may stay open.
            if let Some(permit) = permit {
                connection.lose_permit(permit);
            }
            return;
        };
        runtime.spawn(async move {
            let closed = connection.call("closing", connection.sftp.close(id)).await;
            // Answered, the handle is gone (a refusal too: the server holds
            // no such handle); unanswered, it may still be open.
            if closed.is_err_and(|e| e.kind() == ErrorKind::Timeout) {
                if let Some(permit) = permit {
                    connection.lose_permit(permit);
                }
            }
        });
    }
}

/// Logs in with what is configured: the key file, then the agent, then the
/// password.
async fn log_in(ssh: &mut Handle<Checker>, settings: &SftpSettings) -> OriginResult<()> {
    let user = settings.user.as_str();
    let mut tried = Vec::new();
    let failed = |e: russh::Error| OriginError::unavailable(format!("unreachable: {e}"));
    if let Some(path) = &settings.private_key {
        let key =
            load_secret_key(path, settings.private_key_passphrase.as_deref()).map_err(|e| {
                OriginError::invalid_config(format!("key `private_key` ({}): {e}", path.display()))
            })?;
        if offer_key(ssh, user, key).await? {
            return Ok(());
        }
        tried.push("the key file");
    }
    for path in &settings.default_keys {
        let key = match load_secret_key(path, None) {
            Ok(key) => key,
            Err(e) => {
                tracing::debug!("skipping {}: {e}", path.display());
                continue;
            }
        };
        if offer_key(ssh, user, key).await? {
            return Ok(());
        }
    }
    if !settings.default_keys.is_empty() {
        tried.push("the keys in ~/.ssh");
    }
    if settings.use_agent {
        match russh::keys::agent::client::AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                for identity in identities {
                    let key = identity.public_key().into_owned();
                    let hash = ssh
                        .best_supported_rsa_hash()
                        .await
                        .map_err(failed)?
                        .flatten();
                    let signed = ssh
                        .authenticate_publickey_with(user, key, hash, &mut agent)
                        .await;
                    if signed.is_ok_and(|r| r.success()) {
                        return Ok(());
                    }
                }
                tried.push("the agent's keys");
            }
            Err(e) => tracing::warn!("use_agent is set but the SSH agent is not there: {e}"),
        }
    }
    if let Some(password) = &settings.password {
        if ssh
            .authenticate_password(user, password)
            .await
            .map_err(failed)?
            .success()
        {
            return Ok(());
        }
        tried.push("the password");
    }
    if ssh.is_closed() {
        // Refused because the server went away mid-login, not by it.
        return Err(OriginError::unavailable(format!(
            "unreachable: {}:{} closed the connection while logging in",
            settings.host, settings.port
        )));
    }
    Err(OriginError::permission_denied(if tried.is_empty() {
        format!(
            "authentication failed: no way to log in as {user} is configured \
             (set private_key, use_agent or password)"
        )
    } else {
        format!(
            "authentication failed for {user}@{}: tried {}",
            settings.host,
            tried.join(", ")
        )
    }))
}

/// Offers `key` for `user`; whether the server took it.
async fn offer_key(
    ssh: &mut Handle<Checker>,
    user: &str,
    key: russh::keys::PrivateKey,
) -> OriginResult<bool> {
    let failed = |e: russh::Error| OriginError::unavailable(format!("unreachable: {e}"));
    let hash = ssh
        .best_supported_rsa_hash()
        .await
        .map_err(failed)?
        .flatten();
    let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
    Ok(ssh
        .authenticate_publickey(user, key)
        .await
        .map_err(failed)?
        .success())
}

/// Opens the `sftp` subsystem and learns the server's largest read and the
/// most handles to keep open at once.
async fn open_sftp(
    ssh: &Handle<Checker>,
    settings: &SftpSettings,
) -> OriginResult<(RawSftpSession, u32, u64)> {
    let failed = |e: russh::Error| OriginError::unavailable(format!("unreachable: {e}"));
    let mut channel = ssh.channel_open_session().await.map_err(failed)?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(failed)?;
    // Wait for the answer: a server without SFTP says so here, not as a
    // timeout later.
    loop {
        match channel.wait().await {
            Some(russh::ChannelMsg::Success) => break,
            Some(russh::ChannelMsg::Failure) | None => {
                return Err(OriginError::unavailable(format!(
                    "{}:{} has no SFTP subsystem",
                    settings.host, settings.port
                )))
            }
            _ => {}
        }
    }
    let mut sftp = RawSftpSession::new(channel.into_stream());
    sftp.set_timeout(settings.request_timeout.as_secs().max(1) * BACKSTOP as u64);
    let version = sftp
        .init()
        .await
        .map_err(|e| OriginError::unavailable(format!("SFTP did not start: {e}")))?;
    let mut max_read = DEFAULT_READ;
    let mut max_handles = MAX_OPEN_HANDLES;
    if version.extensions.contains_key("limits@openssh.com") {
        if let Ok(limits) = sftp.limits().await {
            // Zero means no limit of the server's own.
            if limits.max_read_len > 0 {
                max_read = limits.max_read_len.min(MAX_READ as u64) as u32;
            }
            if limits.max_open_handles > 0 {
                max_handles = max_handles.min(limits.max_open_handles);
            }
            sftp.set_limits(Limits::from(limits));
        }
    }
    Ok((sftp, max_read, max_handles))
}
