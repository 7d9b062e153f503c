//! Telling music servers what changed, so they look at those folders instead
//! of rescanning everything (`[[hooks]]` in the config).
//!
//! After a change batch is applied and the kernel told, the daemon hands the
//! changed folders (`library::tree_diff::changed_folders`) to every hook. Each
//! hook has a task of its own: it gathers folders until none has come for its
//! debounce time, runs once for all of them, and on failure tries again after
//! 1 s, 2 s, 4 s, … (at most a minute apart, `retries` times), taking in what
//! changed meanwhile. Nothing here runs on a FUSE thread or holds a lock the
//! mount needs: a hung server delays only its own hook. Outcomes go to the log
//! and to `musicfs status`; secrets never do (they are [`Secret`]s, and errors
//! name the request without its query or headers).
//!
//! - [`mpd`]: the MPD protocol (`update` per folder).
//! - [`http`]: Subsonic (`startScan`), Jellyfin (`/Library/Media/Updated`) and
//!   Plex (`/library/sections/…/refresh`).
//! - [`command`]: a program, with the folders as arguments.

pub mod command;
pub mod http;
pub mod mpd;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::hooks::{HookConfig, HookTarget};
use crate::library::tree_diff::outermost;

/// How long one run of a hook may take before it counts as failed.
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// The longest wait between two attempts.
const LONGEST_BACKOFF: Duration = Duration::from_secs(60);

/// What `musicfs status` shows of one hook.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HookStatus {
    pub name: String,
    pub kind: String,
    /// Runs that succeeded.
    pub runs: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// The last outcome: `ok (N folders)` or `failed: why`; empty before the first.
    pub last: String,
}

/// The running hooks of a mount.
pub struct Hooks {
    senders: Vec<mpsc::UnboundedSender<Vec<String>>>,
    statuses: Arc<Mutex<Vec<HookStatus>>>,
}

impl Hooks {
    /// Starts a task per hook (inside the runtime). `mountpoint` is where the
    /// folders are, for hooks that take absolute paths.
    pub fn start(configs: &[HookConfig], mountpoint: &Path) -> Hooks {
        let statuses = Arc::new(Mutex::new(
            configs
                .iter()
                .map(|c| HookStatus {
                    name: c.name.clone(),
                    kind: c.target.kind().to_owned(),
                    ..HookStatus::default()
                })
                .collect::<Vec<_>>(),
        ));
        let senders = configs
            .iter()
            .enumerate()
            .map(|(at, config)| {
                let (tx, rx) = mpsc::unbounded_channel();
                let runner = Runner {
                    config: config.clone(),
                    mountpoint: mountpoint.to_owned(),
                    statuses: statuses.clone(),
                    at,
                    subsonic: Mutex::new(None),
                };
                tokio::spawn(runner.run(rx));
                tx
            })
            .collect();
        Hooks { senders, statuses }
    }

    /// Hands `folders` (relative to the mount) to every hook; returns at once.
    pub fn changed(&self, folders: &[String]) {
        if folders.is_empty() {
            return;
        }
        for tx in &self.senders {
            // A hook whose task is gone (the runtime stopping) misses nothing
            // anyone will see.
            let _ = tx.send(folders.to_vec());
        }
    }

    /// Every hook's status, in config order.
    pub fn statuses(&self) -> Vec<HookStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The folders a hook is to be told of, and where the mount is.
pub struct Changed<'a> {
    /// Relative to the mount's root (`""` is the root), none inside another.
    pub folders: &'a [String],
    /// The mountpoint.
    pub mountpoint: &'a Path,
}

impl Changed<'_> {
    /// The folders, relative, below `prefix` (where the mount is in the
    /// server's own tree).
    pub fn below(&self, prefix: Option<&str>) -> Vec<String> {
        let prefix = prefix.map(|p| p.trim_matches('/')).unwrap_or("");
        self.folders
            .iter()
            .map(|f| match (prefix.is_empty(), f.is_empty()) {
                (true, _) => f.clone(),
                (false, true) => prefix.to_owned(),
                (false, false) => format!("{prefix}/{f}"),
            })
            .collect()
    }

    /// The folders below `root` (where a server sees the mount).
    pub fn absolute(&self, root: Option<&Path>) -> Vec<PathBuf> {
        let root = root.unwrap_or(self.mountpoint);
        self.folders
            .iter()
            .map(|f| {
                if f.is_empty() {
                    root.to_owned()
                } else {
                    root.join(f)
                }
            })
            .collect()
    }
}

struct Runner {
    config: HookConfig,
    mountpoint: PathBuf,
    statuses: Arc<Mutex<Vec<HookStatus>>>,
    at: usize,
    /// How a Subsonic server took this hook's login, once learned.
    subsonic: Mutex<Option<http::SubsonicLogin>>,
}

impl Runner {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Vec<String>>) {
        let client = http::client();
        while let Some(mut pending) = next_batch(&mut rx, self.config.debounce).await {
            let mut attempt = 0;
            loop {
                let folders = outermost(pending.iter().cloned());
                let changed = Changed {
                    folders: &folders,
                    mountpoint: &self.mountpoint,
                };
                let outcome =
                    match tokio::time::timeout(RUN_DEADLINE, self.once(&client, &changed)).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(format!("no answer within {RUN_DEADLINE:?}")),
                    };
                match outcome {
                    Ok(()) => {
                        tracing::info!(hook = %self.config.name, folders = folders.len(), "told of the changes");
                        self.record(|s| {
                            s.runs += 1;
                            s.last = format!("ok ({} folders)", folders.len());
                        });
                        break;
                    }
                    Err(why) => {
                        self.record(|s| {
                            s.failures += 1;
                            s.last = format!("failed: {why}");
                        });
                        if attempt >= self.config.retries {
                            tracing::warn!(hook = %self.config.name, "could not tell of the changes, giving up after {} attempts: {why}", attempt + 1);
                            break;
                        }
                        let wait = backoff(attempt);
                        tracing::warn!(hook = %self.config.name, "could not tell of the changes (trying again in {wait:?}): {why}");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        // What changed meanwhile goes with the next attempt.
                        while let Ok(more) = rx.try_recv() {
                            pending.extend(more);
                        }
                    }
                }
            }
        }
    }

    async fn once(&self, client: &reqwest::Client, changed: &Changed<'_>) -> Result<(), String> {
        match &self.config.target {
            HookTarget::Mpd {
                address,
                password,
                prefix,
            } => {
                let folders = changed.below(prefix.as_deref());
                mpd::update(address, password.as_ref(), &folders).await
            }
            HookTarget::Subsonic {
                url,
                user,
                password,
                api_key,
                auth,
            } => {
                let credentials = http::SubsonicCredentials {
                    user: user.as_deref(),
                    password: password.as_ref(),
                    api_key: api_key.as_ref(),
                    auth: *auth,
                };
                http::subsonic(client, url, &credentials, &self.subsonic).await
            }
            HookTarget::Jellyfin {
                url,
                api_key,
                library_path,
            } => {
                http::jellyfin(
                    client,
                    url,
                    api_key,
                    &changed.absolute(library_path.as_deref()),
                )
                .await
            }
            HookTarget::Plex {
                url,
                token,
                section,
                library_path,
            } => {
                let folders = changed.absolute(library_path.as_deref());
                http::plex(client, url, token, *section, &folders).await
            }
            HookTarget::Command { command } => command::run(command, &changed.absolute(None)).await,
        }
    }

    fn record(&self, update: impl FnOnce(&mut HookStatus)) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = statuses.get_mut(self.at) {
            update(status);
        }
    }
}

/// The next batch of folders: waits for a change, then takes in more until
/// `quiet` passes with none (a copy of a whole album is one run). `None` once
/// the daemon is gone.
async fn next_batch(
    rx: &mut mpsc::UnboundedReceiver<Vec<String>>,
    quiet: Duration,
) -> Option<BTreeSet<String>> {
    let mut pending: BTreeSet<String> = rx.recv().await?.into_iter().collect();
    loop {
        match tokio::time::timeout(quiet, rx.recv()).await {
            Ok(Some(more)) => pending.extend(more),
            // Quiet, or nothing more will come: this batch is whole.
            Ok(None) | Err(_) => return Some(pending),
        }
    }
}

/// The wait after failed attempt `attempt` (from 0): 1 s, doubling, capped.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(LONGEST_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_batch_ends_after_the_debounce_time_with_no_change() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let started = tokio::time::Instant::now();
        let sender = tokio::spawn(async move {
            tx.send(vec!["A/1".to_owned()]).unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            tx.send(vec!["B".to_owned(), "A/1".to_owned()]).unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.send(vec!["C".to_owned()]).unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            tx.send(vec!["D".to_owned()]).unwrap();
        });
        let quiet = Duration::from_secs(2);
        let first = next_batch(&mut rx, quiet).await.unwrap();
        assert_eq!(first.into_iter().collect::<Vec<_>>(), ["A/1", "B"]);
        assert_eq!(started.elapsed(), Duration::from_millis(3500));
        let second = next_batch(&mut rx, quiet).await.unwrap();
        assert_eq!(second.into_iter().collect::<Vec<_>>(), ["C"]);
        assert_eq!(started.elapsed(), Duration::from_millis(8500));
        // The daemon gone: what came last still makes a batch, then no more.
        sender.await.unwrap();
        let last = next_batch(&mut rx, quiet).await.unwrap();
        assert_eq!(last.into_iter().collect::<Vec<_>>(), ["D"]);
        assert_eq!(started.elapsed(), Duration::from_millis(16_500));
        assert_eq!(next_batch(&mut rx, quiet).await, None);
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (0..9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn folders_are_placed_below_the_mount_or_where_the_server_sees_it() {
        let folders = ["".to_owned(), "A/B".to_owned()];
        let changed = Changed {
            folders: &folders,
            mountpoint: Path::new("/mnt/music"),
        };
        assert_eq!(
            changed.absolute(None),
            [PathBuf::from("/mnt/music"), PathBuf::from("/mnt/music/A/B")]
        );
        assert_eq!(
            changed.absolute(Some(Path::new("/media"))),
            [PathBuf::from("/media"), PathBuf::from("/media/A/B")]
        );
        assert_eq!(changed.below(None), ["", "A/B"]);
        assert_eq!(changed.below(Some("/MusicFS/")), ["MusicFS", "MusicFS/A/B"]);
    }
}
