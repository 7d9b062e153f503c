//! Watching a bucket by polling: every `poll_interval`, list every key under the
//! prefix and compare with the last listing (ETag, size, last-modified); report
//! what was created, modified or removed. The listing taken when the watch starts
//! is the baseline. The task stops when the watch handle is dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::s3_origin::object_path;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::ObjectStore;
use origin_api::{ChangeEvent, ChangeKind, EventSink, WatchHandle};

use crate::s3_settings::S3Settings;

type Listing = BTreeMap<String, (Option<String>, u64, i64)>;

async fn snapshot(store: &AmazonS3, settings: &S3Settings) -> object_store::Result<Listing> {
    let prefix = (!settings.prefix.is_empty()).then(|| object_path(&settings.prefix));
    let strip = if settings.prefix.is_empty() {
        0
    } else {
        settings.prefix.len() + 1
    };
    let objects: Vec<_> = store.list(prefix.as_ref()).try_collect().await?;
    Ok(objects
        .into_iter()
        .filter_map(|o| {
            let key = o.location.as_ref();
            let path = key.get(strip..)?.to_owned();
            (!path.is_empty())
                .then(|| (path, (o.e_tag, o.size, o.last_modified.timestamp_millis())))
        })
        .collect())
}

/// Takes the baseline listing now (so that a change right after `watch` returns is
/// seen), then polls in the background.
pub(crate) async fn start(
    store: Arc<AmazonS3>,
    settings: Arc<S3Settings>,
    sink: EventSink,
) -> WatchHandle {
    let mut last: Option<Listing> = match snapshot(&store, &settings).await {
        Ok(baseline) => Some(baseline),
        Err(e) => {
            tracing::warn!(
                "the first listing for watching failed, the next one is the baseline: {e}"
            );
            None
        }
    };
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(settings.poll_interval).await;
            match snapshot(&store, &settings).await {
                Ok(now) => {
                    if let Some(before) = &last {
                        for (path, seen) in &now {
                            let kind = match before.get(path) {
                                None => Some(ChangeKind::Created),
                                Some(old) if old != seen => Some(ChangeKind::Modified),
                                _ => None,
                            };
                            if let Some(kind) = kind {
                                if !sink.send(ChangeEvent::new(kind, path.clone())) {
                                    return;
                                }
                            }
                        }
                        for path in before.keys().filter(|p| !now.contains_key(*p)) {
                            if !sink.send(ChangeEvent::new(ChangeKind::Removed, path.clone())) {
                                return;
                            }
                        }
                    }
                    last = Some(now);
                }
                Err(e) => tracing::warn!("polling the bucket failed: {e}"),
            }
        }
    });
    WatchHandle::on_stop(move || task.abort())
}
