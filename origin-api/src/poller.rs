//! Watching a backend that cannot push changes, by polling its listing (feature
//! `poller`): S3 today, and SFTP, NFS and SMB servers without change notification.
//!
//! Every interval the whole tree is listed and compared with the last listing; a
//! file that appeared is created, one whose size, mtime or version changed is
//! modified, one that is no longer listed is removed.
//!
//! The first listing, the baseline, is taken by the polling task. Starting
//! waits for it at most [`BASELINE_WAIT`]: a tree that lists within that has
//! every change made after `start` returns reported (what the conformance suite
//! checks); a library of 100,000 files 50 ms away takes longer to list than any
//! one call's deadline, and a watch that had to list before returning never
//! started there, so past that wait the baseline goes on in the background. A
//! change that lands while it is being taken is then in the baseline, or
//! reported by the next poll when the baseline listed its path before it; a
//! host that scans while the watch starts sees the first kind in its own
//! listing. Folders are listed
//! [`WALK_IN_FLIGHT`] at a time, so a poll costs the round trips of the tree's
//! depth, not one or more per folder.
//!
//! Each poll's listing requests, bytes listed, files and time are counted in
//! the [`PollFigures`] given to [`start_counted`], which the origin reports
//! through `Origin::watch_stats` for the host's metrics.
//!
//! Unreachable is never removed: a listing that fails reports nothing, and a
//! folder that could not be listed keeps its files (they are not reported gone).
//! When the first listing fails (the origin was down as watching began), the
//! one that finally succeeds becomes the baseline and the poller reports a
//! change of the root (`Modified` of `""`): whatever was added while the
//! origin was down is in that baseline, and no diff would ever name it.
//!
//! A backend that can say *that* something changed but not reliably *what*
//! (SMB's CHANGE_NOTIFY: its buffer overflows, servers differ on recursive
//! watches) starts the poller with [`start_nudged`] and [`Nudge`]s it: the next
//! listing then comes at once (after [`SETTLE`], so that a copy of an album is
//! one listing, not twenty), and the listing still says what changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::{
    ChangeEvent, ChangeKind, EntryKind, EventSink, Metadata, Origin, OriginResult, PollStats,
    WatchHandle,
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

impl Listing {
    /// Bytes of the paths and version tokens of its files: what a poll
    /// carried of them, without the protocol's framing.
    fn bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|(path, seen)| (path.len() + seen.version.as_ref().map_or(0, String::len)) as u64)
            .sum()
    }
}

tokio::task_local! {
    /// The listing requests of the poll running in this task.
    static REQUESTS: Arc<std::sync::atomic::AtomicU64>;
}

/// Counts one listing request toward the poll running in this task, if any
/// (since 1.6): [`walk`] counts its own; a [`ListAll`] that lists otherwise
/// (one flat listing, in pages) calls this once a request.
pub fn count_request() {
    let _ = REQUESTS.try_with(|n| n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
}

/// Lists everything below the root, for [`start`].
#[async_trait]
pub trait ListAll: Send + Sync + 'static {
    /// The whole tree now; an error when even its root cannot be listed.
    async fn list_all(&self) -> OriginResult<Listing>;
}

/// Folders (or pages of one) asked for at once by [`walk`]: over a link 50 ms
/// away a walk one folder at a time costs a round trip or three per folder
/// (SFTP: open, read, read to the end); with this many in flight a poll of
/// 100,000 tracks in 5,500 folders took about 7 s (27 s with 32), and the
/// requests stay small enough for any server to take at once.
pub const WALK_IN_FLIGHT: usize = 128;

/// The whole tree of `origin`, walked with its own paged `list`, `page` entries
/// at a time, [`WALK_IN_FLIGHT`] requests in flight (what most backends want; a
/// store that lists every key in one request should implement [`ListAll`] with
/// that instead).
pub async fn walk(origin: &dyn Origin, page: u32) -> OriginResult<Listing> {
    walk_in_flight(origin, page, WALK_IN_FLIGHT).await
}

/// [`walk`] with at most `in_flight` listing requests at once (at least one).
pub async fn walk_in_flight(
    origin: &dyn Origin,
    page: u32,
    in_flight: usize,
) -> OriginResult<Listing> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut listing = Listing::default();
    // Pages still to ask for: a folder and the cursor of its next page.
    let mut waiting: Vec<(String, Option<String>)> = vec![(String::new(), None)];
    let mut asked = FuturesUnordered::new();
    loop {
        while asked.len() < in_flight.max(1) {
            let Some((dir, cursor)) = waiting.pop() else {
                break;
            };
            asked.push(async move {
                let found = origin.list(&dir, cursor.as_deref(), page).await;
                (dir, cursor, found)
            });
        }
        let Some((dir, cursor, found)) = asked.next().await else {
            break;
        };
        count_request();
        let found = match found {
            Ok(found) => found,
            Err(e) if dir.is_empty() && cursor.is_none() => return Err(e),
            Err(_) => {
                listing.unlisted.push(dir);
                continue;
            }
        };
        for entry in found.entries {
            let path = crate::path::join(&dir, &entry.name);
            match entry.metadata.kind {
                EntryKind::Directory => waiting.push((path, None)),
                EntryKind::File => {
                    listing.files.insert(path, Seen::from(&entry.metadata));
                }
                _ => {}
            }
        }
        if let Some(next) = found.next_cursor {
            waiting.push((dir, Some(next)));
        }
    }
    listing.unlisted.sort();
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

/// Polls `source` every `every` and sends what changed to `sink`, until the
/// returned handle is stopped or dropped (or the sink is closed). Returns once
/// the baseline listing is taken, or after [`BASELINE_WAIT`] with the baseline
/// still being taken in the background (see the module's notes).
pub async fn start(source: Arc<dyn ListAll>, every: Duration, sink: EventSink) -> WatchHandle {
    start_nudged(source, every, sink).await.0
}

/// The longest starting a poller waits for its baseline listing: a tree that
/// lists within it has every change after `start` returns reported; a larger
/// or farther one is watched all the same, well inside any call's deadline.
pub const BASELINE_WAIT: Duration = Duration::from_secs(2);

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

/// What a poller has done (see [`PollStats`]): cheap to clone, every clone
/// the same counts. An origin keeps one, hands it to [`start_counted`], and
/// answers `Origin::watch_stats` with [`PollFigures::stats`].
#[derive(Clone, Debug, Default)]
pub struct PollFigures(Arc<Mutex<PollStats>>);

impl PollFigures {
    /// The counts now.
    pub fn stats(&self) -> PollStats {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finished(&self, listing: Option<&Listing>, requests: u64, took: Duration) {
        let mut stats = self.0.lock().unwrap_or_else(|p| p.into_inner());
        stats.polls += 1;
        stats.requests += requests;
        let Some(listing) = listing else {
            stats.failed += 1;
            return;
        };
        let bytes = listing.bytes();
        stats.bytes += bytes;
        stats.last_requests = requests;
        stats.last_bytes = bytes;
        stats.last_files = listing.files.len() as u64;
        stats.last_millis = took.as_millis().try_into().unwrap_or(u64::MAX);
    }
}

/// [`start`], and a [`Nudge`] that makes the poller list at once.
pub async fn start_nudged(
    source: Arc<dyn ListAll>,
    every: Duration,
    sink: EventSink,
) -> (WatchHandle, Nudge) {
    start_counted(source, every, sink, PollFigures::default()).await
}

/// [`start_nudged`], counting each poll in `figures` (since 1.6).
pub async fn start_counted(
    source: Arc<dyn ListAll>,
    every: Duration,
    sink: EventSink,
    figures: PollFigures,
) -> (WatchHandle, Nudge) {
    let nudge = Nudge::default();
    let nudged = nudge.0.clone();
    let (baseline_taken, baseline) = tokio::sync::oneshot::channel::<()>();
    let mut baseline_taken = Some(baseline_taken);
    let task = tokio::spawn(async move {
        // The baseline: until one listing succeeds, the next one is tried at
        // the next interval (or nudge), and it becomes the baseline.
        let mut last: Option<Listing> = None;
        // Whether a listing failed before the baseline was taken: then what
        // changed while nothing could list is in the baseline, unreported.
        let mut unseen = false;
        loop {
            // The first pass is the one that has not yet said so.
            let first = baseline_taken.is_some();
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = nudged.notified() => tokio::time::sleep(SETTLE).await,
                }
            }
            let started = tokio::time::Instant::now();
            let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let listed = REQUESTS.scope(requests.clone(), source.list_all()).await;
            let requests = requests.load(std::sync::atomic::Ordering::Relaxed);
            figures.finished(listed.as_ref().ok(), requests, started.elapsed());
            match listed {
                Ok(now) => {
                    let events = match &last {
                        Some(before) => changes(before, &now),
                        // A late baseline: anything may have changed since
                        // watching began, so the host is told to look at
                        // everything (the root, "").
                        None if unseen => vec![ChangeEvent::new(ChangeKind::Modified, "")],
                        None => Vec::new(),
                    };
                    for event in events {
                        if !sink.send(event) {
                            return;
                        }
                    }
                    last = Some(now);
                }
                // Unreachable: nothing is reported, the last listing stays.
                Err(e) if last.is_none() => {
                    unseen = true;
                    tracing::warn!(
                        "the first listing for watching failed, the next one is the baseline: {e}"
                    )
                }
                Err(e) => tracing::warn!("polling for changes failed: {e}"),
            }
            if let Some(taken) = baseline_taken.take() {
                let _ = taken.send(());
            }
        }
    });
    // Made before the wait: a caller that gives up waiting (its deadline)
    // drops the handle, which stops the task, rather than leaving it polling
    // for nobody.
    let handle = WatchHandle::on_stop(move || task.abort());
    let _ = tokio::time::timeout(BASELINE_WAIT, baseline).await;
    (handle, nudge)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree a test changes, listed on demand, each listing taking `delay` (of
    /// paused time).
    struct Tree {
        files: std::sync::Mutex<Listing>,
        delay: Duration,
        listings: std::sync::atomic::AtomicUsize,
    }

    impl Tree {
        fn new(delay: Duration) -> Arc<Tree> {
            Arc::new(Tree {
                files: Default::default(),
                delay,
                listings: Default::default(),
            })
        }

        fn put(&self, name: &str) {
            let mut files = self.files.lock().unwrap();
            files.files.insert(name.to_owned(), seen("v", 1));
        }

        fn listings(&self) -> usize {
            self.listings.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl ListAll for Tree {
        async fn list_all(&self) -> OriginResult<Listing> {
            let listing = self.files.lock().unwrap().clone();
            tokio::time::sleep(self.delay).await;
            self.listings
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(listing)
        }
    }

    fn collecting_sink() -> (EventSink, tokio::sync::mpsc::UnboundedReceiver<ChangeEvent>) {
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let sink = EventSink::new(move |e| {
            let _ = events_tx.send(e);
        });
        (sink, events)
    }

    #[tokio::test(start_paused = true)]
    async fn a_nudge_lists_at_once_and_the_interval_still_runs() {
        let tree = Tree::new(Duration::ZERO);
        let (sink, mut events) = collecting_sink();
        let every = Duration::from_secs(3600);
        let (handle, nudge) = start_nudged(tree.clone(), every, sink).await;
        // A quick tree: the baseline was taken before starting returned.
        assert_eq!(tree.listings(), 1);
        tree.put("a");
        let begun = tokio::time::Instant::now();
        nudge.poll_now();
        let event = events.recv().await.unwrap();
        assert_eq!(
            (event.kind, event.path.as_str()),
            (ChangeKind::Created, "a")
        );
        assert_eq!(begun.elapsed(), SETTLE);
        // Unnudged, the interval finds the next change.
        tree.put("b");
        let event = events.recv().await.unwrap();
        assert_eq!(event.path, "b");
        assert_eq!(begun.elapsed(), SETTLE + every);
        handle.stop();
    }

    /// A tree that takes ten minutes to list (100,000 files far away): starting
    /// the watch waits for it no longer than [`BASELINE_WAIT`], and what changes
    /// after the baseline is reported by the next poll.
    #[tokio::test(start_paused = true)]
    async fn starting_returns_before_a_slow_baseline() {
        let listing = Duration::from_secs(600);
        let tree = Tree::new(listing);
        tree.put("old");
        let (sink, mut events) = collecting_sink();
        let every = Duration::from_secs(60);
        let begun = tokio::time::Instant::now();
        let handle = start(tree.clone(), every, sink).await;
        assert_eq!(
            begun.elapsed(),
            BASELINE_WAIT,
            "start waited for the listing"
        );
        assert_eq!(tree.listings(), 0);
        while tree.listings() == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tree.put("new");
        let event = events.recv().await.unwrap();
        assert_eq!(
            (event.kind, event.path.as_str()),
            (ChangeKind::Created, "new")
        );
        assert_eq!(
            tree.listings(),
            2,
            "reported by the poll after the baseline"
        );
        handle.stop();
    }

    /// Regression (behaviour::sftp::offline): the origin is down as watching
    /// begins and a file is added before it comes back. The baseline, taken
    /// late, holds the file; the poller says to look at everything.
    #[tokio::test(start_paused = true)]
    async fn a_baseline_taken_after_failures_reports_the_root() {
        struct Down(Arc<Tree>, std::sync::atomic::AtomicBool);
        #[async_trait]
        impl ListAll for Down {
            async fn list_all(&self) -> OriginResult<Listing> {
                if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(crate::OriginError::unavailable("down"));
                }
                self.0.list_all().await
            }
        }
        let tree = Tree::new(Duration::ZERO);
        let source = Arc::new(Down(tree.clone(), true.into()));
        let (sink, mut events) = collecting_sink();
        let every = Duration::from_secs(10);
        let handle = start(source.clone(), every, sink).await;
        tokio::time::sleep(every * 3).await;
        tree.put("added while down");
        source.1.store(false, std::sync::atomic::Ordering::SeqCst);
        let event = events.recv().await.unwrap();
        assert_eq!(
            (event.kind, event.path.as_str()),
            (ChangeKind::Modified, "")
        );
        // After that, diffs as usual, and nothing else was reported.
        tree.put("later");
        let event = events.recv().await.unwrap();
        assert_eq!(event.path, "later");
        assert!(events.try_recv().is_err());
        handle.stop();
    }

    /// An origin of `fanout` folders of `fanout` folders of one file each, whose
    /// listings take 50 ms (of paused time); counts the most listings at once.
    struct Wide {
        fanout: usize,
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Origin for Wide {
        async fn stat(&self, _: &str) -> OriginResult<Metadata> {
            unreachable!("a walk only lists")
        }
        async fn list(
            &self,
            dir: &str,
            cursor: Option<&str>,
            limit: u32,
        ) -> OriginResult<crate::ListPage> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            self.calls.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.now.fetch_sub(1, SeqCst);
            let depth = if dir.is_empty() {
                0
            } else {
                dir.split('/').count()
            };
            let names: Vec<(String, EntryKind)> = match depth {
                0 | 1 => (0..self.fanout)
                    .map(|i| (format!("d{i}"), EntryKind::Directory))
                    .collect(),
                _ => vec![("f.flac".to_owned(), EntryKind::File)],
            };
            // Pages of `limit` entries, the cursor being the index of the next.
            let from: usize = cursor.map_or(0, |c| c.parse().unwrap());
            let to = (from + limit as usize).min(names.len());
            let entries = names[from..to]
                .iter()
                .map(|(name, kind)| crate::DirEntry {
                    name: name.clone(),
                    metadata: Metadata {
                        kind: *kind,
                        ..Metadata::file(1, SystemTime::UNIX_EPOCH)
                    },
                })
                .collect();
            Ok(crate::ListPage {
                entries,
                next_cursor: (to < names.len()).then(|| to.to_string()),
            })
        }
        async fn read(&self, _: &str, _: u64, _: u32) -> OriginResult<Vec<u8>> {
            unreachable!("a walk only lists")
        }
        async fn health(&self) -> crate::Health {
            crate::Health::healthy()
        }
        async fn watch(&self, _: EventSink) -> OriginResult<WatchHandle> {
            unreachable!("a walk only lists")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_walk_keeps_its_requests_in_flight_together() {
        use std::sync::atomic::Ordering::SeqCst;
        let origin = Wide {
            fanout: 20,
            now: Default::default(),
            most: Default::default(),
            calls: Default::default(),
        };
        let begun = tokio::time::Instant::now();
        let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let listing = REQUESTS
            .scope(counted.clone(), walk_in_flight(&origin, 7, 16))
            .await
            .unwrap();
        assert_eq!(listing.files.len(), 400);
        assert!(listing.files.contains_key("d19/d3/f.flac"));
        // 1 root folder + 20 + 400, the first 21 in pages of 7: 3 + 20 * 3 + 400.
        assert_eq!(origin.calls.load(SeqCst), 463);
        assert_eq!(counted.load(SeqCst), 463, "a poll counts every request");
        assert_eq!(
            origin.most.load(SeqCst),
            16,
            "never more than asked, and that many"
        );
        // 463 listings of 50 ms, 16 at a time: about 29 round trips plus the
        // depth, not 463.
        assert!(
            begun.elapsed() <= Duration::from_millis(50 * 36),
            "{:?}",
            begun.elapsed()
        );
    }

    /// Each poll is counted: the baseline and the polls after it, with the
    /// last one's requests, bytes and files, and a failed one apart.
    #[tokio::test(start_paused = true)]
    async fn every_poll_is_counted() {
        struct Counted(Arc<Tree>, std::sync::atomic::AtomicBool);
        #[async_trait]
        impl ListAll for Counted {
            async fn list_all(&self) -> OriginResult<Listing> {
                // Three pages of a flat listing.
                for _ in 0..3 {
                    count_request();
                }
                if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(crate::OriginError::unavailable("gone"));
                }
                self.0.list_all().await
            }
        }
        let tree = Tree::new(Duration::from_millis(40));
        // Paths and versions ("v") of 10 bytes each.
        tree.put("a.flac___");
        tree.put("b.flac___");
        let source = Arc::new(Counted(tree.clone(), Default::default()));
        let figures = PollFigures::default();
        let (sink, _events) = collecting_sink();
        let (handle, _) = start_counted(
            source.clone(),
            Duration::from_secs(1),
            sink,
            figures.clone(),
        )
        .await;
        assert_eq!(
            figures.stats(),
            PollStats {
                polls: 1,
                failed: 0,
                requests: 3,
                bytes: 20,
                last_requests: 3,
                last_bytes: 20,
                last_files: 2,
                last_millis: 40,
            }
        );
        tree.put("c.flac___");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let stats = figures.stats();
        assert_eq!((stats.polls, stats.requests, stats.bytes), (2, 6, 50));
        assert_eq!((stats.last_bytes, stats.last_files), (30, 3));
        source.1.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let stats = figures.stats();
        assert_eq!((stats.polls, stats.failed, stats.requests), (3, 1, 9));
        assert_eq!(stats.last_files, 3, "the last poll that listed");
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
