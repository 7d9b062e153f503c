//! The tier's bucket: the few S3 calls the tier makes, each under the tier's
//! deadline, with keys under the tier's prefix, and every failure one
//! [`TierError`] (the read path only needs to know to go on to the origin).

use std::ops::Range;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::config::tier::TierConfig;

/// Why a call to the tier did not give what was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierError {
    /// No such object.
    NotFound,
    /// The call ran out its deadline.
    Timeout,
    /// The store refused or failed the call, or could not be reached.
    Failed(String),
    /// What came back is not what the tier wrote (damaged, or foreign).
    Damaged(String),
    /// The store refused the credentials this call: a read-only key asked to
    /// write, say.
    Refused(String),
}

impl std::fmt::Display for TierError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TierError::NotFound => f.write_str("not in the tier"),
            TierError::Timeout => f.write_str("the tier did not answer in time"),
            TierError::Failed(why) => write!(f, "the tier failed: {why}"),
            TierError::Damaged(why) => write!(f, "damaged object in the tier: {why}"),
            TierError::Refused(why) => write!(f, "the tier refused: {why}"),
        }
    }
}

impl std::error::Error for TierError {}

/// What a call to the tier gives.
pub type TierResult<T> = Result<T, TierError>;

/// An object listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key, below the tier's prefix.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// When the store last wrote it, in its clock (seconds since the epoch).
    pub modified: i64,
}

/// The tier's bucket.
pub struct Bucket {
    store: AmazonS3,
    prefix: String,
    deadline: Duration,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("prefix", &self.prefix)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    /// A client of the bucket `config` names; an error says what in it is wrong.
    pub fn open(config: &TierConfig) -> Result<Bucket, String> {
        let store = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(config.secret_access_key.expose())
            .with_virtual_hosted_style_request(false)
            // The tier's own deadline and failover decide; no retries inside.
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.plain_http())
                    .with_timeout(config.deadline())
                    .with_connect_timeout(config.deadline().min(Duration::from_secs(5))),
            )
            .build()
            .map_err(|e| format!("cannot set up the tier's S3 client: {e}"))?;
        Ok(Bucket {
            store,
            prefix: config.prefix.trim_matches('/').to_owned(),
            deadline: config.deadline(),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> TierResult<T> {
        match tokio::time::timeout(self.deadline, call).await {
            Err(_) => Err(TierError::Timeout),
            Ok(Err(object_store::Error::NotFound { .. })) => Err(TierError::NotFound),
            Ok(Err(
                e @ (object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }),
            )) => Err(TierError::Refused(e.to_string())),
            Ok(Err(e)) => Err(TierError::Failed(e.to_string())),
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// The whole object at `key`.
    pub async fn get(&self, key: &str) -> TierResult<Vec<u8>> {
        let path = self.path(key);
        let bytes = self
            .bounded(async { self.store.get(&path).await?.bytes().await })
            .await?;
        Ok(bytes.to_vec())
    }

    /// `range` of the object at `key`.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> TierResult<Vec<u8>> {
        let path = self.path(key);
        let want = range.end - range.start;
        let bytes = self.bounded(self.store.get_range(&path, range)).await?;
        if bytes.len() as u64 != want {
            return Err(TierError::Damaged(format!(
                "{key}: {} bytes where {want} were asked for",
                bytes.len()
            )));
        }
        Ok(bytes.to_vec())
    }

    /// Writes `bytes` at `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> TierResult<()> {
        let path = self.path(key);
        self.bounded(self.store.put(&path, PutPayload::from(bytes)))
            .await
            .map(|_| ())
    }

    /// Whether an object is at `key`.
    pub async fn exists(&self, key: &str) -> TierResult<bool> {
        let path = self.path(key);
        match self.bounded(self.store.head(&path)).await {
            Ok(_) => Ok(true),
            Err(TierError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes `key` (done if it was not there).
    pub async fn delete(&self, key: &str) -> TierResult<()> {
        let path = self.path(key);
        match self.bounded(self.store.delete(&path)).await {
            Err(TierError::NotFound) => Ok(()),
            done => done,
        }
    }

    /// Every object whose key starts with `folder/`. Each page of the
    /// listing has the deadline, not the whole: a large bucket lists in
    /// many.
    pub async fn list(&self, folder: &str) -> TierResult<Vec<Listed>> {
        let prefix = self.path(folder);
        let strip = match self.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.prefix),
        };
        let mut listed = Vec::new();
        let mut stream = self.store.list(Some(&prefix));
        loop {
            let next = match tokio::time::timeout(self.deadline, stream.next()).await {
                Err(_) => return Err(TierError::Timeout),
                Ok(None) => return Ok(listed),
                Ok(Some(next)) => next,
            };
            let meta = match next {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => return Ok(listed),
                Err(e) => return Err(TierError::Failed(e.to_string())),
            };
            let key = meta.location.as_ref();
            listed.push(Listed {
                key: key.strip_prefix(&strip).unwrap_or(key).to_owned(),
                size: meta.size,
                modified: meta.last_modified.timestamp(),
            });
        }
    }
}
