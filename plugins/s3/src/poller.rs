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
    let base = settings.dir_prefix("");
    let prefix = (!settings.prefix.is_empty()).then(|| object_path(&settings.prefix));
    let objects: Vec<_> = store.list(prefix.as_ref()).try_collect().await?;
    Ok(objects
        .into_iter()
        .filter_map(|o| {
            let path = o.location.as_ref().strip_prefix(base.as_str())?.to_owned();
            (!path.is_empty())
                .then(|| (path, (o.e_tag, o.size, o.last_modified.timestamp_millis())))
        })
        .collect())
}

/// What happened between two listings: created and modified keys, then removed ones.
fn changes(before: &Listing, now: &Listing) -> Vec<ChangeEvent> {
    let created_or_modified = now.iter().filter_map(|(path, seen)| {
        let kind = match before.get(path) {
            None => ChangeKind::Created,
            Some(old) if old != seen => ChangeKind::Modified,
            Some(_) => return None,
        };
        Some(ChangeEvent::new(kind, path.clone()))
    });
    let removed = before
        .keys()
        .filter(|p| !now.contains_key(*p))
        .map(|p| ChangeEvent::new(ChangeKind::Removed, p.clone()));
    created_or_modified.chain(removed).collect()
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
                    let events = last.as_ref().map(|before| changes(before, &now));
                    for event in events.into_iter().flatten() {
                        if !sink.send(event) {
                            return;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_between_listings() {
        let entry = |etag: &str, size| (Some(etag.to_owned()), size, 0);
        let before: Listing = [
            ("kept".to_owned(), entry("a", 1)),
            ("edited".to_owned(), entry("b", 2)),
            ("gone".to_owned(), entry("c", 3)),
        ]
        .into();
        let now: Listing = [
            ("kept".to_owned(), entry("a", 1)),
            ("edited".to_owned(), entry("b2", 2)),
            ("new".to_owned(), entry("d", 4)),
        ]
        .into();
        let seen: Vec<(ChangeKind, String)> = changes(&before, &now)
            .into_iter()
            .map(|e| (e.kind, e.path.to_string()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (ChangeKind::Modified, "edited".to_owned()),
                (ChangeKind::Created, "new".to_owned()),
                (ChangeKind::Removed, "gone".to_owned()),
            ]
        );
    }
}
