//! The control socket's `pin`, `unpin` and `pins` requests.
//!
//! - `pin ["Artist/Album", …]` (paths relative to the mount): checks that each
//!   is in the library and that what these and the other pins still need
//!   fits on the cache's disk, pins them, wakes the keeper, and then reports progress as JSON lines
//!   (`files_total`, `files_done`, `bytes_total`, `bytes_done`) until every
//!   file is cached (`"done": true`) or a pass of the keeper begun after the
//!   pin could not fetch the rest (`"done": true, "failed": [[path, why]…]`).
//!   The pin stays either way; a client that hangs up stops only the reports.
//! - `unpin ["…"]`: `{"ok": true}`, or an error naming the pin a path is
//!   pinned through.
//! - `pins`: one line, a list of `{path, pinned_at, files, bytes, cached_bytes}`.
//!
//! Errors are one line, `{"error": "…"}`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::block_in_place;

use crate::cache::content_cache::ContentCache;
use crate::control::socket::{send_line, Out, Requests};
use crate::library::view::LibraryView;
use crate::paths::disk_space;
use crate::pins::keeper::{cached_bytes, files_at, pinned_files, Keeper, PinnedFile};
use crate::pins::{margin, normal, shown, Pins};

/// How often a `pin` request reports progress.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// The pin requests of one mount.
pub struct PinRequests {
    pub pins: Arc<Pins>,
    pub keeper: Arc<Keeper>,
    pub view: LibraryView,
    pub cache: Arc<ContentCache>,
    pub cache_dir: PathBuf,
}

#[async_trait::async_trait]
impl Requests for PinRequests {
    async fn answer(&self, name: &str, argument: &str, out: Out<'_>) -> bool {
        let outcome = match name {
            "pin" => self.pin(argument, out).await,
            "unpin" => self.unpin(argument, out).await,
            "pins" => self.list(out).await,
            _ => return false,
        };
        if let Err(error) = outcome {
            send_line(out, &json!({ "error": error })).await;
        }
        true
    }
}

/// The paths of a request: a JSON list of strings, made normal.
fn paths_of(argument: &str) -> Result<Vec<String>, String> {
    let paths: Vec<String> =
        serde_json::from_str(argument).map_err(|e| format!("a list of paths was expected: {e}"))?;
    if paths.is_empty() {
        return Err("no path given".into());
    }
    Ok(paths.iter().map(|p| normal(p)).collect())
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl PinRequests {
    async fn pin(&self, argument: &str, out: Out<'_>) -> Result<(), String> {
        let paths = paths_of(argument)?;
        let tree = self.view.snapshot();
        let mut files: BTreeMap<String, PinnedFile> = BTreeMap::new();
        for path in &paths {
            let found = files_at(&tree, path)
                .ok_or_else(|| format!("{} is not in the library", shown(path)))?;
            for file in found {
                files.entry(file.path.clone()).or_insert(file);
            }
        }
        let files: Vec<PinnedFile> = files.into_values().collect();
        let total: u64 = files.iter().map(|f| f.size).sum();
        block_in_place(|| self.check_room(&paths, &files))?;
        block_in_place(|| self.pins.add(&paths))?;
        // Every pass begun from now on works with the new pins.
        let mut passes = self.keeper.passes();
        let begun_before = passes.borrow_and_update().started;
        self.keeper.wake();
        // Progress, over the files of this request only.
        let mut done = vec![false; files.len()];
        let mut ticks = tokio::time::interval(REPORT_EVERY);
        loop {
            // Looked at before the files: a pass that ended since has stored
            // all it could by then.
            let last = passes.borrow_and_update().clone();
            let mut bytes_done = 0;
            block_in_place(|| {
                for (at, file) in files.iter().enumerate() {
                    let cached = match done[at] {
                        true => file.size,
                        false => cached_bytes(&self.cache, file).min(file.size),
                    };
                    done[at] = cached >= file.size;
                    bytes_done += cached;
                }
            });
            let files_done = done.iter().filter(|d| **d).count();
            let mut report = json!({
                "files_total": files.len(),
                "files_done": files_done,
                "bytes_total": total,
                "bytes_done": bytes_done,
            });
            let all = files_done == files.len();
            // A pass begun after the pin, ended, and still files missing: it
            // could not fetch them.
            let given_up = last.finished > begun_before && !all;
            if all || given_up {
                report["done"] = json!(true);
                let failed: Vec<(String, String)> = files
                    .iter()
                    .zip(&done)
                    .filter(|(_, d)| !**d)
                    .map(|(f, _)| {
                        let why = last.failed.get(&f.path).cloned();
                        (f.path.clone(), why.unwrap_or_else(|| "not fetched".into()))
                    })
                    .collect();
                report["failed"] = json!(failed);
                send_line(out, &report).await;
                return Ok(());
            }
            if !send_line(out, &report).await {
                return Ok(());
            }
            tokio::select! {
                _ = ticks.tick() => {}
                _ = passes.changed() => {}
            }
        }
    }

    async fn unpin(&self, argument: &str, out: Out<'_>) -> Result<(), String> {
        let paths = paths_of(argument)?;
        block_in_place(|| self.pins.remove(&paths))?;
        self.keeper.wake();
        send_line(out, &json!({ "ok": true })).await;
        Ok(())
    }

    async fn list(&self, out: Out<'_>) -> Result<(), String> {
        let list = block_in_place(|| self.describe_pins());
        send_line(out, &json!(list)).await;
        Ok(())
    }

    /// Every pin with its files' count, size and bytes on disk.
    fn describe_pins(&self) -> Vec<serde_json::Value> {
        let tree = self.view.snapshot();
        let mut list = Vec::new();
        for (path, pinned_at) in self.pins.list() {
            let found = files_at(&tree, &path);
            let in_library = found.is_some();
            let files = found.unwrap_or_default();
            let bytes: u64 = files.iter().map(|f| f.size).sum();
            let cached: u64 = files
                .iter()
                .map(|f| cached_bytes(&self.cache, f).min(f.size))
                .sum();
            list.push(json!({
                "path": path,
                "pinned_at": pinned_at,
                "files": files.len(),
                "bytes": bytes,
                "cached_bytes": cached,
                "in_library": in_library,
            }));
        }
        list
    }

    /// Refuses a pin of `files` (for `paths`) that would not fit on the
    /// cache's disk, counting what every other pin still needs too.
    fn check_room(&self, paths: &[String], files: &[PinnedFile]) -> Result<(), String> {
        let Some((free, size)) = disk_space(&self.cache_dir) else {
            return Ok(());
        };
        let mut wanted: BTreeMap<&str, &PinnedFile> =
            files.iter().map(|f| (f.path.as_str(), f)).collect();
        let pinned = pinned_files(&self.view.snapshot(), &self.pins);
        for file in &pinned {
            wanted.entry(file.path.as_str()).or_insert(file);
        }
        let needed: u64 = wanted
            .values()
            .map(|f| f.size - cached_bytes(&self.cache, f).min(f.size))
            .sum();
        let margin = margin(size);
        if needed.saturating_add(margin) <= free {
            return Ok(());
        }
        Err(format!(
            "cannot pin {}: the pins need {} more in the cache, and {} has {} free (at least {} must stay free)",
            paths.iter().map(|p| shown(p)).collect::<Vec<_>>().join(", "),
            megabytes(needed),
            self.cache_dir.display(),
            megabytes(free),
            megabytes(margin),
        ))
    }
}
