//! The change path: every live origin's watch feeds the library.
//!
//! When an origin comes up, a watch is started on it (the registry keeps the
//! handle, so unregistering stops it). Events are gathered for [`SETTLE`], then
//! applied per origin: a removed path drops the records at or below it; a created or
//! modified path is looked at again (a folder is rescanned below it, a file gets a
//! new record, its tags read through the cache if it changed). The tree is updated
//! for what changed (`library::tree_update`: the folders those records are and
//! were in, not the library), swapped in, and the kernel is told what to
//! forget (fuser's notifier), so `ls` and `cat` see the change at once. An origin that becomes
//! unreachable sends nothing here: unreachable is not deleted.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use origin_api::{ChangeEvent, ChangeKind, EntryKind, ErrorKind};
use tokio::sync::mpsc;

use crate::daemon::Daemon;
use crate::library::index::{self, FileRecord};
use crate::library::scanner::{
    library_file, read_tags_of, scan_subtree, sort_out, Found, Known, KnownFiles, ScanProgress,
};
use crate::telemetry::events::Event;

/// How soon a watch that could not be started is tried again.
const WATCH_RETRY: Duration = Duration::from_secs(5);

/// How long a burst of changes may keep arriving before it is applied.
const SETTLE: Duration = Duration::from_millis(150);
/// The longest a change waits while others keep arriving.
const MAX_BATCH_DELAY: Duration = Duration::from_secs(1);

/// Starts watching every origin that is or comes up, and applying what they report,
/// until the returned task is aborted.
pub fn start(daemon: &Arc<Daemon>) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::unbounded_channel::<(String, ChangeEvent)>();
    let daemon = daemon.clone();
    let mut changes = daemon.registry.changes();
    tokio::spawn(async move {
        let applier = tokio::spawn(apply_loop(daemon.clone(), rx));
        // Registrations watched so far (a re-registered origin is watched again).
        let mut watched: HashSet<u64> = HashSet::new();
        loop {
            let live = daemon.registry.all();
            watched.retain(|serial| live.iter().any(|o| o.serial == *serial));
            let unwatched: Vec<_> = live
                .iter()
                .filter(|o| !watched.contains(&o.serial))
                .collect();
            let mut failed = false;
            for origin in unwatched {
                let tx = tx.clone();
                let id = origin.id.clone();
                match origin
                    .watch(move |event| drop(tx.send((id.clone(), event))))
                    .await
                {
                    Ok(()) => {
                        watched.insert(origin.serial);
                    }
                    Err(e) => {
                        tracing::warn!(origin = %origin.id, "cannot watch for changes yet: {e}");
                        failed = true;
                        // What changes before the watch starts, nobody sees:
                        // a scan looks again (see `Daemon::retry_incomplete_scans`).
                        daemon.mark_incomplete();
                    }
                }
            }
            // An origin that was down when its watch was started (an unplugged
            // drive) is tried again until it works.
            let retry = async {
                if failed {
                    tokio::time::sleep(WATCH_RETRY).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    applier.abort();
                    return;
                },
                () = retry => {}
            }
        }
    })
}

async fn apply_loop(daemon: Arc<Daemon>, mut rx: mpsc::UnboundedReceiver<(String, ChangeEvent)>) {
    while let Some(first) = rx.recv().await {
        let arrived = tokio::time::Instant::now();
        let mut batch: BTreeMap<String, BTreeMap<String, ChangeKind>> = BTreeMap::new();
        let mut add = |(origin, event): (String, ChangeEvent)| {
            batch
                .entry(origin)
                .or_default()
                .insert(event.path, event.kind);
        };
        add(first);
        // Until quiet, but not for ever: a reader whose reads keep finding the
        // file changed sends a change each time, and must not hold off the very
        // change that would end its errors.
        let last_chance = tokio::time::Instant::now() + MAX_BATCH_DELAY;
        loop {
            let until = (tokio::time::Instant::now() + SETTLE).min(last_chance);
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(next)) => add(next),
                _ => break,
            }
        }
        let settled = tokio::time::Instant::now();
        let events: usize = batch.values().map(BTreeMap::len).sum();
        // The old and new versions of what changed, and what each write did.
        let (mut changed, mut writes) = (Vec::new(), Vec::new());
        for (origin, changes) in batch {
            // What the index holds at and below the changed paths: records of
            // files that did not change are reused from it. Read by key range,
            // so this costs what changed, not the library.
            let known = match index::load_below(&daemon.store, &origin, changes.keys()) {
                Ok(known) => known
                    .iter()
                    .map(|(key, record)| (key.clone(), Known::from(record)))
                    .collect(),
                Err(e) => {
                    tracing::warn!("cannot apply changes: {e}");
                    continue;
                }
            };
            // What changed, for the tier's index (none without a tier).
            let paths: Vec<String> = match daemon.tier.get() {
                Some(_) => changes.keys().cloned().collect(),
                None => Vec::new(),
            };
            if let Some((upserts, applied)) = apply(&daemon, &known, &origin, changes).await {
                daemon.index_changed(&origin, &paths);
                // The old versions as the write found them: a scan may have
                // changed the index since `known` was read.
                changed.extend(applied.replaced);
                changed.extend(upserts);
                writes.push(applied.written);
            } else {
                writes.push(index::Written::Unknown);
            }
        }
        daemon.update_tree(&changed, &writes);
        tracing::debug!(
            events,
            records = changed.len(),
            shown_ms = arrived.elapsed().as_millis() as u64,
            applied_ms = settled.elapsed().as_millis() as u64,
            "change batch shown"
        );
    }
}

/// Updates the index for `changes` (path → what happened) on origin
/// `origin_id`; returns the records written and what the write did, `None` if
/// it could not be made.
async fn apply(
    daemon: &Daemon,
    known: &KnownFiles,
    origin_id: &str,
    changes: BTreeMap<String, ChangeKind>,
) -> Option<(Vec<FileRecord>, index::Applied)> {
    let Some(origin) = daemon.registry.get(origin_id) else {
        let nothing = index::Applied {
            written: index::Written::Same,
            replaced: Vec::new(),
        };
        return Some((Vec::new(), nothing));
    };
    let progress = Arc::new(ScanProgress::default());
    let (mut removed, mut upserts, mut to_read) = (Vec::new(), Vec::new(), Vec::new());
    let mut unchanged = Vec::new();
    // Folders below a changed one that could not be listed: their records stay.
    let mut kept = Vec::new();
    for (path, kind) in changes {
        daemon.events.publish(Event::FileChanged {
            origin: origin_id.to_owned(),
            path: path.clone(),
            change: format!("{kind:?}"),
        });
        removed.push(path.clone());
        if kind == ChangeKind::Removed {
            continue;
        }
        match origin.stat(&path).await {
            Ok(meta) if meta.kind == EntryKind::Directory => {
                // A change's records are few: all written at once, below.
                let mut keep = |_: &mut Vec<FileRecord>| {};
                match scan_subtree(
                    &origin,
                    &daemon.cache,
                    &daemon.store,
                    known,
                    &progress,
                    &path,
                    &mut keep,
                )
                .await
                {
                    Ok(subtree) => {
                        if !subtree.unlisted.is_empty() {
                            daemon.mark_incomplete();
                        }
                        unchanged.extend(subtree.unchanged.into_iter().map(|(key, _)| key));
                        upserts.extend(subtree.records);
                        kept.extend(subtree.unlisted.into_iter().map(|(dir, _)| dir));
                    }
                    Err(e) => {
                        // Unreachable is not deleted: keep what the index has below
                        // it, and let a scan look again.
                        tracing::warn!(origin = %origin_id, path = %path, "cannot rescan: {e}");
                        removed.pop();
                        daemon.mark_incomplete();
                    }
                }
            }
            Ok(meta) => {
                if let Some(record) = library_file(origin_id, path, &meta) {
                    match sort_out(known, record) {
                        Found::Unchanged(key, _) => unchanged.push(key),
                        Found::Ready(ready) => upserts.push(ready),
                        Found::ToRead(record) => to_read.push(record),
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {} // gone again: stays removed
            Err(e) => {
                // Unreachable is not deleted: keep what the index has for it, and
                // let a scan look again.
                tracing::warn!(origin = %origin_id, path = %path, "cannot look at a change: {e}");
                removed.pop();
                daemon.mark_incomplete();
            }
        }
    }
    let (read, untouched) = read_tags_of(
        &origin,
        &daemon.cache,
        &daemon.store,
        &progress,
        known,
        to_read,
    )
    .await;
    upserts.extend(read);
    if !untouched.is_empty() {
        // Kept as the index holds them; a scan reads them again.
        unchanged.extend(
            untouched
                .iter()
                .filter_map(|key| known.get_key_value(key).map(|(key, _)| key.as_str())),
        );
        daemon.mark_incomplete();
    }
    if upserts.iter().any(FileRecord::tags_pending) {
        daemon.mark_incomplete();
    }
    match index::apply_change(
        &daemon.store,
        origin_id,
        &removed,
        &kept,
        &unchanged,
        &upserts,
    ) {
        Ok(applied) => Some((upserts, applied)),
        Err(e) => {
            // Lost from the index, not from the origin: the next scan picks them up.
            tracing::warn!("cannot record changes, a scan will: {e}");
            daemon.mark_incomplete();
            None
        }
    }
}
