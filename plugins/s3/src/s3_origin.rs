//! The S3 origin: stat is a HEAD, list is one paginated ListObjectsV2 request with
//! a `/` delimiter (folders are common prefixes), read is one ranged GET.
//!
//! object_store's own retries are off: the host's failover layer retries, and
//! retrying twice would multiply a dead endpoint's delay. Every wait on the
//! server (connecting, then each read from the socket) has the
//! `request_timeout_secs` deadline (30 s by default), not the request as a whole:
//! a GET streams its body for as long as the host reads it. The host's call
//! deadline is usually shorter and cancels first.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig};
use origin_api::{
    async_trait, DirEntry, EventSink, Health, ListPage, Metadata, Origin, OriginError,
    OriginResult, ReadStream, WatchHandle,
};

use crate::errors::{cause, health_reason, is_range_past_end, origin_error, Cause};
use crate::poller;
use crate::s3_settings::S3Settings;

pub(crate) struct S3Origin {
    store: Arc<AmazonS3>,
    settings: Arc<S3Settings>,
    /// What the watch's polls did, for the host's metrics.
    polls: origin_api::poller::PollFigures,
}

impl S3Origin {
    pub(crate) fn open(settings: S3Settings) -> OriginResult<S3Origin> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_virtual_hosted_style_request(settings.virtual_hosted_style)
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(settings.allow_http)
                    // A GET streams for as long as its reader reads: no bound on
                    // the whole request, but on each wait for the socket.
                    .with_timeout_disabled()
                    .with_read_timeout(settings.request_timeout)
                    .with_connect_timeout(Duration::from_secs(5).min(settings.request_timeout)),
            );
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &settings.session_token {
            builder = builder.with_token(token);
        }
        let store = builder.build().map_err(|e| {
            OriginError::invalid_config(format!("cannot set up the S3 client: {e}"))
        })?;
        tracing::debug!(settings = ?settings, "s3 origin opened");
        Ok(S3Origin {
            store: Arc::new(store),
            settings: Arc::new(settings),
            polls: Default::default(),
        })
    }

    async fn list_page(
        &self,
        prefix: &str,
        token: Option<String>,
        max: usize,
    ) -> object_store::Result<object_store::list::PaginatedListResult> {
        let options = PaginatedListOptions {
            delimiter: Some("/".into()),
            max_keys: Some(max),
            page_token: token,
            ..PaginatedListOptions::default()
        };
        let prefix = (!prefix.is_empty()).then_some(prefix);
        self.store.list_paginated(prefix, options).await
    }
}

/// What a HEAD or a listing says of an object, alike: the mtime to the
/// whole second, as a HEAD's `Last-Modified` (an HTTP date) has it, where a
/// listing's `LastModified` has milliseconds. Were they to differ, a file a
/// watch found (by HEAD) would look changed to the next scan (a listing)
/// and be read again.
fn file_metadata(meta: &object_store::ObjectMeta) -> Metadata {
    let seconds = meta.last_modified.timestamp().max(0) as u64;
    Metadata {
        version: meta.e_tag.clone(),
        ..Metadata::file(
            meta.size,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
        )
    }
}

/// The last segment of a key or common prefix.
fn name_of(key: &str) -> &str {
    key.trim_end_matches('/').rsplit('/').next().unwrap_or(key)
}

#[async_trait]
impl Origin for S3Origin {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        if path.is_empty() {
            return Ok(Metadata::directory(SystemTime::UNIX_EPOCH));
        }
        let key = self.settings.key(path);
        let error = match self.store.head(&object_path(&key)).await {
            Ok(meta) => return Ok(file_metadata(&meta)),
            Err(e) => e,
        };
        let why = cause(&error);
        if matches!(
            why,
            Cause::AccessDenied | Cause::Unreachable | Cause::NoSuchBucket
        ) {
            return Err(origin_error(error));
        }
        // Not an object (some servers answer a HEAD of a "folder" with an error
        // other than 404): a folder if anything lies below it.
        let below = self
            .list_page(&format!("{key}/"), None, 1)
            .await
            .map_err(origin_error)?;
        if !below.result.objects.is_empty() || !below.result.common_prefixes.is_empty() {
            return Ok(Metadata::directory(SystemTime::UNIX_EPOCH));
        }
        Err(match why {
            Cause::NotFound => OriginError::not_found(path),
            _ => origin_error(error),
        })
    }

    async fn list(&self, dir: &str, cursor: Option<&str>, limit: u32) -> OriginResult<ListPage> {
        let prefix = self.settings.dir_prefix(dir);
        let page = self
            .list_page(
                &prefix,
                cursor.map(str::to_owned),
                limit.clamp(1, 1000) as usize,
            )
            .await
            .map_err(origin_error)?;
        let mut entries: Vec<DirEntry> = page
            .result
            .common_prefixes
            .iter()
            .map(|p| DirEntry {
                name: name_of(p.as_ref()).to_owned(),
                metadata: Metadata::directory(SystemTime::UNIX_EPOCH),
            })
            .collect();
        let marker = prefix.trim_end_matches('/');
        entries.extend(
            page.result
                .objects
                .iter()
                // A zero-byte "folder marker" object named like the prefix itself.
                .filter(|o| o.location.as_ref() != marker)
                .map(|o| DirEntry {
                    name: name_of(o.location.as_ref()).to_owned(),
                    metadata: file_metadata(o),
                }),
        );
        if entries.is_empty() && cursor.is_none() && !dir.is_empty() {
            return Err(OriginError::not_found(dir));
        }
        Ok(ListPage {
            entries,
            next_cursor: page.page_token,
        })
    }

    async fn read(&self, path: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        Origin::read_version(self, path, offset, len, None).await
    }

    /// A ranged GET with `If-Match: <ETag>` when a version is expected; the ETag
    /// of the response is compared as well, for a store that ignores If-Match.
    async fn read_version(
        &self,
        path: &str,
        offset: u64,
        len: u32,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>> {
        self.read_stream(path, offset, len as u64, expected)
            .collect()
            .await
    }

    /// One ranged GET (checked as [`Self::read_version`] is), its body handed on
    /// as it arrives.
    fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        let opened = async move {
            match self.get(path, offset, len, expected).await {
                Ok(Some(body)) => body,
                Ok(None) => futures_util::stream::empty().boxed(),
                Err(e) => futures_util::stream::iter([Err(e)]).boxed(),
            }
        };
        ReadStream::new(futures_util::stream::once(opened).flatten())
    }

    async fn health(&self) -> Health {
        let prefix = self.settings.dir_prefix("");
        match self.list_page(&prefix, None, 1).await {
            Ok(_) => Health::healthy(),
            Err(e) => Health::unhealthy(health_reason(&e)),
        }
    }

    async fn watch(&self, sink: EventSink) -> OriginResult<WatchHandle> {
        let polls = self.polls.clone();
        Ok(poller::start(self.store.clone(), self.settings.clone(), sink, polls).await)
    }

    fn watch_stats(&self) -> Option<origin_api::PollStats> {
        Some(self.polls.stats())
    }
}

impl S3Origin {
    /// The body of a ranged GET of `len` bytes at `offset` of version `expected`,
    /// or `None` when there is nothing to read there.
    async fn get(
        &self,
        path: &str,
        offset: u64,
        len: u64,
        expected: Option<&str>,
    ) -> OriginResult<Option<BoxStream<'static, OriginResult<Vec<u8>>>>> {
        if len == 0 {
            // Still say whether the file exists.
            self.stat(path).await?;
            return Ok(None);
        }
        let key = object_path(&self.settings.key(path));
        let options = GetOptions {
            // A length past any object (a read "to the end") is asked as such:
            // servers refuse a Range end beyond what a signed 64-bit number holds.
            range: Some(match offset.checked_add(len) {
                Some(end) if end <= i64::MAX as u64 => GetRange::Bounded(offset..end),
                _ => GetRange::Offset(offset),
            }),
            if_match: expected.map(str::to_owned),
            ..GetOptions::default()
        };
        let changed = || OriginError::changed(format!("{path}: not the version asked for"));
        match self.store.get_opts(&key, options).await {
            Ok(result) if expected.is_some() && result.meta.e_tag.as_deref() != expected => {
                Err(changed())
            }
            // Vec::from reuses a piece's buffer when it owns it alone.
            Ok(result) => Ok(Some(
                result
                    .into_stream()
                    .map(|piece| piece.map(Vec::from).map_err(origin_error))
                    .boxed(),
            )),
            Err(object_store::Error::Precondition { .. }) => Err(changed()),
            // A range that starts at or past the end: nothing to read, not an error.
            Err(object_store::Error::NotModified { .. }) => Ok(None),
            Err(e) if is_range_past_end(&e) => {
                self.stat(path).await?;
                Ok(None)
            }
            // A "folder" (keys below it, none at it): not a file to read.
            Err(e) => match self.stat(path).await {
                Ok(meta) if meta.kind == origin_api::EntryKind::Directory => Err(
                    origin_api::OriginError::not_found(format!("{path}: not a file")),
                ),
                _ => Err(origin_error(e)),
            },
        }
    }
}

/// A key as object_store's path, taken as it is: the adapter already refused `..`,
/// empty segments and NULs, and `Path::from` would percent-encode non-ASCII names.
pub(crate) fn object_path(key: &str) -> ObjectPath {
    ObjectPath::parse(key).unwrap_or_else(|_| ObjectPath::from(key))
}
