//! Watching the root with `notify` (inotify on Linux), debounced.
//!
//! Raw notifications come in bursts (a copy is a create and many writes), so they are
//! gathered until the folder has been quiet for [`QUIET`] (at most [`MAX_DELAY`]
//! after the first), then each path is reported once. The kind is decided when the
//! batch is flushed, from what is on disk then: gone (not found) means removed;
//! present and created during the batch means created; otherwise (including a
//! path that cannot be stat'ed) modified. That also turns a
//! rename into a removal and a creation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use origin_api::{ChangeEvent, ChangeKind, EventSink, OriginError, OriginResult, WatchHandle};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

/// How long the folder must be quiet before a batch is reported.
const QUIET: Duration = Duration::from_millis(200);
/// The longest a change waits to be reported while changes keep coming.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Starts watching `root` (canonical) and reporting to `sink`.
pub(crate) fn start(root: PathBuf, sink: EventSink) -> OriginResult<WatchHandle> {
    let (tx, rx) = mpsc::unbounded_channel::<notify::Event>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                let _ = tx.send(event);
            }
            Err(e) => tracing::warn!("watch error: {e}"),
        })
        .map_err(|e| OriginError::other(format!("cannot watch {}: {e}", root.display())))?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|e| OriginError::other(format!("cannot watch {}: {e}", root.display())))?;
    let task = tokio::spawn(debounce(root, rx, sink));
    Ok(WatchHandle::on_stop(move || {
        drop(watcher);
        task.abort();
    }))
}

async fn debounce(root: PathBuf, mut rx: mpsc::UnboundedReceiver<notify::Event>, sink: EventSink) {
    // Path → whether it was created during the batch.
    let mut batch: BTreeMap<PathBuf, bool> = BTreeMap::new();
    while let Some(first) = rx.recv().await {
        add(&mut batch, first);
        let last_chance = Instant::now() + MAX_DELAY;
        loop {
            let quiet_until = (Instant::now() + QUIET).min(last_chance);
            match timeout_at(quiet_until, rx.recv()).await {
                Ok(Some(event)) => add(&mut batch, event),
                Ok(None) => return,
                Err(_) => break,
            }
        }
        for (path, created) in std::mem::take(&mut batch) {
            if let Some(event) = classify(&root, &path, created) {
                if !sink.send(event) {
                    return;
                }
            }
        }
    }
}

fn add(batch: &mut BTreeMap<PathBuf, bool>, event: notify::Event) {
    let created = match event.kind {
        EventKind::Access(_) => return,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) => true,
        _ => false,
    };
    for path in event.paths {
        *batch.entry(path).or_insert(false) |= created;
    }
}

fn classify(root: &Path, path: &Path, created: bool) -> Option<ChangeEvent> {
    let rel = path.strip_prefix(root).ok()?.to_str()?;
    if rel.is_empty() {
        return None;
    }
    let kind = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ChangeKind::Removed,
        // There but not answering (a dead network mount): not a removal; the
        // host looks at it and keeps what it knew.
        Err(_) => ChangeKind::Modified,
        Ok(_) if created => ChangeKind::Created,
        Ok(_) => ChangeKind::Modified,
    };
    Some(ChangeEvent::new(kind, rel))
}
