//! The connection: one smb2 client (one TCP connection, one signed-in
//! session, the share connected), made on first use within the deadline and
//! made again after it is lost. Requests from every caller share it: smb2
//! multiplexes them by message id, within the server's credits.
//!
//! With none live, one attempt runs at a time; a failed attempt answers for
//! [`RETRY_AFTER`], so calls fail fast (or fail over) while the server is
//! away, and the origin comes back by itself when it returns
//! (`origin_api::reconnect`). smb2's own
//! reconnect is off: a call that meets a dead connection fails at once
//! rather than waiting inside the library for a revival.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use origin_api::reconnect::Reconnect;
use origin_api::{OriginError, OriginResult};
use smb2::client::connection::Connection;
use smb2::{ClientConfig, SmbClient, Tree};

use crate::errors::{connect_error, fault, origin_error, Fault};
use crate::smb_settings::SmbSettings;

const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The largest READ asked. Servers offer up to 8 MiB; smaller READs, several
/// in flight, keep the link busy and the first bytes early. Measured at the
/// plugin on loopback (8 streams on one connection, 16 READs in flight each):
/// 435 MB/s with 256 KiB READs, 242 MB/s with 1 MiB ones.
const READ_SIZE: u32 = 256 << 10;

/// A live connection to the share.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) conn: Connection,
    pub(crate) tree: Arc<Tree>,
    pub(crate) max_read: u32,
    generation: u64,
}

pub(crate) struct Session {
    settings: Arc<SmbSettings>,
    live: Reconnect<Live>,
}

pub(crate) fn shown(path: &str) -> &str {
    if path.is_empty() {
        "the root"
    } else {
        path
    }
}

impl Session {
    pub(crate) fn new(settings: Arc<SmbSettings>) -> Session {
        Session {
            settings,
            live: Reconnect::new(RETRY_AFTER),
        }
    }

    pub(crate) fn settings(&self) -> &SmbSettings {
        &self.settings
    }

    pub(crate) fn deadline(&self) -> Duration {
        self.settings.request_timeout
    }

    /// The live connection, made if there is none.
    pub(crate) async fn live(&self) -> OriginResult<Live> {
        self.live
            .get(|generation| async move {
                let made = self.connect(generation).await;
                if let Err(e) = &made {
                    tracing::debug!("cannot connect to {}: {e}", self.settings.host);
                }
                made
            })
            .await
    }

    async fn connect(&self, generation: u64) -> OriginResult<Live> {
        let s = &self.settings;
        let config = ClientConfig {
            addr: s.address(),
            timeout: self.deadline(),
            username: s.user.clone(),
            password: s.password.clone(),
            domain: s.domain.clone(),
            auto_reconnect: false,
            // Audio does not compress; trying costs CPU on every READ.
            compression: false,
            // A referral could send the password to another server.
            dfs_enabled: false,
            response_timeout: Some(self.deadline()),
            ..Default::default()
        };
        let secs = self.deadline().as_secs();
        let unreachable = || {
            OriginError::timeout(format!(
                "unreachable: no answer from {} within {secs} s",
                s.address()
            ))
        };
        let mut client = tokio::time::timeout(self.deadline(), SmbClient::connect(config))
            .await
            .map_err(|_| unreachable())?
            .map_err(|e| connect_error(&e, &s.host, &s.share))?;
        let tree = tokio::time::timeout(self.deadline(), client.connect_share(&s.share))
            .await
            .map_err(|_| unreachable())?
            .map_err(|e| connect_error(&e, &s.host, &s.share))?;
        if s.require_encryption {
            encrypt(&mut client, &s.host)?;
        }
        let conn = client.connection().clone();
        let max_read = conn
            .params()
            .map_or(64 << 10, |p| p.max_read_size)
            .clamp(4096, READ_SIZE);
        tracing::debug!(
            host = s.host,
            share = s.share,
            dialect = ?conn.params().map(|p| p.dialect),
            encrypted = conn.should_encrypt(),
            max_read,
            "smb share connected"
        );
        Ok(Live {
            conn,
            tree: Arc::new(tree),
            max_read,
            generation,
        })
    }

    /// Notes the failure `error` of `live`: a lost connection is dropped (the
    /// next call makes another).
    pub(crate) fn failed(&self, live: &Live, error: &smb2::Error, what: &str) -> OriginError {
        if fault(error) == Fault::Gone {
            tracing::debug!("smb connection lost: {error}");
            self.drop_live(live);
        }
        origin_error(error, what)
    }

    /// `call` on the live connection within the deadline, its failure noted.
    pub(crate) async fn on_live<T, F, Fut>(&self, what: &str, call: F) -> OriginResult<T>
    where
        F: FnOnce(Live) -> Fut,
        Fut: Future<Output = smb2::Result<T>>,
    {
        let live = self.live().await?;
        match tokio::time::timeout(self.deadline(), call(live.clone())).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(self.failed(&live, &e, what)),
            Err(_) => {
                self.drop_live(&live);
                Err(self.timed_out(what))
            }
        }
    }

    pub(crate) fn timed_out(&self, what: &str) -> OriginError {
        OriginError::timeout(format!(
            "unreachable: no answer about {what} within {} s",
            self.deadline().as_secs()
        ))
    }

    /// Forgets `live` if it is still the live connection.
    pub(crate) fn drop_live(&self, live: &Live) {
        self.live.forget(live.generation);
    }
}

/// Makes sure every message to and from the share is encrypted: the server
/// asked for it, or it offers SMB 3 encryption and this client turns it on.
/// A server that offers none is refused.
fn encrypt(client: &mut SmbClient, host: &str) -> OriginResult<()> {
    if client.connection().should_encrypt() {
        return Ok(());
    }
    let cipher = client.params().and_then(|p| p.cipher);
    let session = client.session();
    match (cipher, &session.encryption_key, &session.decryption_key) {
        (Some(cipher), Some(enc), Some(dec)) => {
            let (enc, dec) = (enc.clone(), dec.clone());
            client
                .connection_mut()
                .activate_encryption(enc, dec, cipher);
            Ok(())
        }
        _ => Err(OriginError::permission_denied(format!(
            "encryption refused: {host} does not offer SMB 3 encryption, and \
             require_encryption = true"
        ))),
    }
}
