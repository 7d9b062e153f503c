//! Watching a bucket: origin-api's listing poller over one flat listing of every
//! key under the prefix per poll (cheaper than walking "folders" one request
//! each).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures_util::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::ObjectStore;
use origin_api::poller::{count_request, ListAll, Listing, PollFigures, Seen};
use origin_api::{async_trait, EventSink, OriginResult, WatchHandle};

use crate::errors::origin_error;
use crate::s3_origin::object_path;
use crate::s3_settings::S3Settings;

/// Keys a ListObjectsV2 page holds at most (what the store asks for).
const LIST_PAGE: usize = 1000;

/// Every key under the prefix, with its ETag, size and last-modified time.
struct Bucket {
    store: Arc<AmazonS3>,
    settings: Arc<S3Settings>,
}

#[async_trait]
impl ListAll for Bucket {
    async fn list_all(&self) -> OriginResult<Listing> {
        let base = self.settings.dir_prefix("");
        let prefix = (!self.settings.prefix.is_empty()).then(|| object_path(&self.settings.prefix));
        let objects: Vec<_> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(origin_error)?;
        // ListObjectsV2 answers at most 1,000 keys a page.
        for _ in 0..objects.len().div_ceil(LIST_PAGE).max(1) {
            count_request();
        }
        let files = objects
            .into_iter()
            .filter_map(|o| {
                let path = o.location.as_ref().strip_prefix(base.as_str())?.to_owned();
                let millis = o.last_modified.timestamp_millis();
                let seen = Seen {
                    size: o.size,
                    modified: UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64),
                    version: o.e_tag,
                };
                (!path.is_empty()).then_some((path, seen))
            })
            .collect();
        Ok(Listing {
            files,
            unlisted: Vec::new(),
        })
    }
}

/// Starts polling the bucket (see `origin_api::poller`).
pub(crate) async fn start(
    store: Arc<AmazonS3>,
    settings: Arc<S3Settings>,
    sink: EventSink,
    polls: PollFigures,
) -> WatchHandle {
    let every = settings.poll_interval;
    let bucket = Arc::new(Bucket { store, settings });
    origin_api::poller::start_counted(bucket, every, sink, polls)
        .await
        .0
}
