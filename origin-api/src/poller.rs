//! Watching a backend that cannot push changes, by polling its listing (feature
//! `poller`): S3 today, and SFTP, NFS and SMB servers without change notification.
//!
//! Every interval the whole tree is listed and compared with the last listing; a
//! file that appeared is created, one whose size, mtime or version changed is
//! modified, one that is no longer listed is removed. The listing taken when the
//! watch starts is the baseline, so a change right after `watch` returns is seen.
//!
//! Unreachable is never removed: a listing that fails reports nothing, and a
//! folder that could not be listed keeps its files (they are not reported gone).
//!
//! A backend that can say *that* something changed but not reliably *what*
//! (SMB's CHANGE_NOTIFY: its buffer overflows, servers differ on recursive
//! watches) starts the poller with [`start_nudged`] and [`Nudge`]s it: the next
//! listing then comes at once (after [`SETTLE`], so that a copy of an album is
//! one listing, not twenty), and the listing still says what changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::{
    ChangeEvent, ChangeKind, EntryKind, EventSink, Metadata, Origin, OriginResult, WatchHandle,
};

/// What a listing says about one file: what tells that it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Its size.
    pub size: u64,
    /// Its mtime.
    pub modified: SystemTime,
    /// Its version token, if the backend gives one.
    pub version: Option<String>,
}

impl From<&Metadata> for Seen {
    fn from(meta: &Metadata) -> Self {
        Seen {
            size: meta.size,
            modified: meta.modified,
            version: meta.version.clone(),
        }
    }
}

/// Every file below the root at one moment, by path, and the folders that could
/// not be listed (what lies below them is not known to be gone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The files.
    pub files: BTreeMap<String, Seen>,
    /// Folders whose listing failed.
    pub unlisted: Vec<String>,
}

/// Lists everything below the root, for [`start`].
#[async_trait]
pub trait ListAll: Send + Sync + 'static {
    /// The whole tree now; an error when even its root cannot be listed.
    async fn list_all(&self) -> OriginResult<Listing>;
}

/// The whole tree of `origin`, walked with its own paged `list`, `page` entries
/// at a time (what most backends want; a store that lists every key in one
/// request should implement [`ListAll`] with that instead).
pub async fn walk(origin: &dyn Origin, page: u32) -> OriginResult<Listing> {
    let mut listing = Listing::default();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        let mut cursor: Option<String> = None;
        loop {
            let found = match origin.list(&dir, cursor.as_deref(), page).await {
                Ok(found) => found,
                Err(e) if dir.is_empty() && cursor.is_none() => return Err(e),
                Err(_) => {
                    listing.unlisted.push(dir.clone());
                    break;
                }
            };
            for entry in found.entries {
                let path = crate::path::join(&dir, &entry.name);
                match entry.metadata.kind {
                    EntryKind::Directory => dirs.push(path),
                    EntryKind::File => {
                        listing.files.insert(path, Seen::from(&entry.metadata));
                    }
                    _ => {}
                }
            }
            match found.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(listing)
}

/// What happened between two listings: created and modified files, then removed
/// ones (never one below a folder `now` could not list).
pub fn changes(before: &Listing, now: &Listing) -> Vec<ChangeEvent> {
    let created_or_modified = now.files.iter().filter_map(|(path, seen)| {
        let kind = match before.files.get(path) {
            None => ChangeKind::Created,
            Some(old) if old != seen => ChangeKind::Modified,
            Some(_) => return None,
        };
        Some(ChangeEvent::new(kind, path.clone()))
    });
    let unlisted = |path: &str| {
        now.unlisted.iter().any(|dir| {
            path.strip_prefix(dir.as_str())
                .is_some_and(|rest| dir.is_empty() || rest.starts_with('/'))
        })
    };
    let removed = before
        .files
        .keys()
        .filter(|p| !now.files.contains_key(*p) && !unlisted(p))
        .map(|p| ChangeEvent::new(ChangeKind::Removed, p.clone()));
    created_or_modified.chain(removed).collect()
}

/// Takes the baseline listing now, then polls `source` every `every` and sends
/// what changed to `sink`, until the returned handle is stopped or dropped (or
/// the sink is closed).
pub async fn start(source: Arc<dyn ListAll>, every: Duration, sink: EventSink) -> WatchHandle {
    start_nudged(source, every, sink).await.0
}

/// How long a nudged poller waits for more nudges before it lists.
pub const SETTLE: Duration = Duration::from_millis(250);

/// Asks a poller started by [`start_nudged`] to list now. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Nudge(Arc<tokio::sync::Notify>);

impl Nudge {
    /// The next listing comes within [`SETTLE`], not at the next interval.
    pub fn poll_now(&self) {
        self.0.notify_one();
    }
}

/// [`start`], and a [`Nudge`] that makes the poller list at once.
pub async fn start_nudged(
    source: Arc<dyn ListAll>,
    every: Duration,
    sink: EventSink,
) -> (WatchHandle, Nudge) {
    let nudge = Nudge::default();
    let nudged = nudge.0.clone();
    let mut last = match source.list_all().await {
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
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = nudged.notified() => tokio::time::sleep(SETTLE).await,
            }
            match source.list_all().await {
                Ok(now) => {
                    let events = last.as_ref().map(|before| changes(before, &now));
                    for event in events.into_iter().flatten() {
                        if !sink.send(event) {
                            return;
                        }
                    }
                    last = Some(now);
                }
                // Unreachable: nothing is reported, the last listing stays.
                Err(e) => tracing::warn!("polling for changes failed: {e}"),
            }
        }
    });
    (WatchHandle::on_stop(move || task.abort()), nudge)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree whose one file is replaced by a test, listed on demand.
    struct Tree(std::sync::Mutex<Listing>);

    #[async_trait]
    impl ListAll for Tree {
        async fn list_all(&self) -> OriginResult<Listing> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_nudge_lists_at_once_and_the_interval_still_runs() {
        let tree = Arc::new(Tree(std::sync::Mutex::new(Listing::default())));
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let sink = EventSink::new(move |e| {
            let _ = events_tx.send(e);
        });
        let every = Duration::from_secs(3600);
        let (handle, nudge) = start_nudged(tree.clone(), every, sink).await;
        let put = |name: &str| {
            let mut files = tree.0.lock().unwrap();
            files.files.insert(name.to_owned(), seen("v", 1));
        };
        put("a");
        let begun = tokio::time::Instant::now();
        nudge.poll_now();
        let event = events.recv().await.unwrap();
        assert_eq!(
            (event.kind, event.path.as_str()),
            (ChangeKind::Created, "a")
        );
        assert_eq!(begun.elapsed(), SETTLE);
        // Unnudged, the interval finds the next change.
        put("b");
        let event = events.recv().await.unwrap();
        assert_eq!(event.path, "b");
        assert_eq!(begun.elapsed(), SETTLE + every);
        handle.stop();
    }

    fn seen(version: &str, size: u64) -> Seen {
        Seen {
            size,
            modified: SystemTime::UNIX_EPOCH,
            version: Some(version.to_owned()),
        }
    }

    fn listing(files: &[(&str, Seen)], unlisted: &[&str]) -> Listing {
        Listing {
            files: files
                .iter()
                .map(|(p, s)| (p.to_string(), s.clone()))
                .collect(),
            unlisted: unlisted.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn kinds(events: Vec<ChangeEvent>) -> Vec<(ChangeKind, String)> {
        events.into_iter().map(|e| (e.kind, e.path)).collect()
    }

    #[test]
    fn changes_between_listings() {
        let before = listing(
            &[
                ("kept", seen("a", 1)),
                ("edited", seen("b", 2)),
                ("gone", seen("c", 3)),
            ],
            &[],
        );
        let now = listing(
            &[
                ("kept", seen("a", 1)),
                ("edited", seen("b2", 2)),
                ("new", seen("d", 4)),
            ],
            &[],
        );
        assert_eq!(
            kinds(changes(&before, &now)),
            [
                (ChangeKind::Modified, "edited".to_owned()),
                (ChangeKind::Created, "new".to_owned()),
                (ChangeKind::Removed, "gone".to_owned()),
            ]
        );
    }

    #[test]
    fn files_below_an_unlisted_folder_are_not_removed() {
        let before = listing(
            &[
                ("nas/a", seen("a", 1)),
                ("nasty/b", seen("b", 1)),
                ("c", seen("c", 1)),
            ],
            &[],
        );
        let now = listing(&[("c", seen("c", 1))], &["nas"]);
        assert_eq!(
            kinds(changes(&before, &now)),
            [(ChangeKind::Removed, "nasty/b".to_owned())]
        );
    }
}
