//! `musicfs doctor`: what a mount needs, checked without mounting, one line
//! each, with what to do about anything wrong: FUSE (`fusermount3` from the
//! fuse3 package, `/dev/fuse` readable and writable), `user_allow_other` for
//! music servers running as other users, the plugins folder and a plugin
//! for each configured origin's kind, each origin's reachability and
//! credentials (its plugin opened and its health asked, as a mount would),
//! the cache disk, and whether the kernel can pass cached files through.
//!
//! It never touches a running mount: plugin copies go to a folder of its
//! own, the index is not opened. Each problem is a line starting with
//! `FAIL` (the mount would not work, or not for some origin) or `warn` (it
//! works, less well); `musicfs doctor` exits non-zero when any line fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use origin_api::HealthStatus;

use crate::config::Config;
use crate::daemon::{plugin_processes, DaemonOptions};
use crate::origins::registry::Registry;
use crate::plugins::manager::PluginManager;
use crate::telemetry::events::EventBus;

/// How a check went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, less well.
    Warn,
    /// Will not work.
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    /// What was checked: `fuse`, `origin nas (sftp)`.
    pub what: String,
    /// What was found, and what to do about it.
    pub said: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{mark} {}: {}", self.what, self.said)
    }
}

fn finding(verdict: Verdict, what: impl Into<String>, said: impl Into<String>) -> Finding {
    Finding {
        verdict,
        what: what.into(),
        said: said.into(),
    }
}

/// Every check, in order.
pub async fn examine(options: &DaemonOptions, config: &Config) -> Vec<Finding> {
    let mut found = vec![fusermount(), dev_fuse(), allow_other()];
    found.extend(plugins_and_origins(options, config).await);
    found.push(cache_disk(&options.cache_dir(config), config));
    found.push(passthrough(config));
    found
}

/// Whether `program` is a file in one of `$PATH`'s folders.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn fusermount() -> Finding {
    match on_path("fusermount3") {
        Some(found) => finding(Verdict::Ok, "fuse", format!("{} found", found.display())),
        None => finding(
            Verdict::Fail,
            "fuse",
            "fusermount3 is not on the PATH: install the fuse3 package (apt-get install fuse3)",
        ),
    }
}

fn dev_fuse() -> Finding {
    let dev = c"/dev/fuse";
    if !Path::new("/dev/fuse").exists() {
        return finding(
            Verdict::Fail,
            "/dev/fuse",
            "missing: load the fuse module (modprobe fuse); in a container, pass the device in (--device /dev/fuse)",
        );
    }
    // SAFETY: access reads a NUL-terminated path.
    let usable = unsafe { libc::access(dev.as_ptr(), libc::R_OK | libc::W_OK) } == 0;
    if usable {
        finding(Verdict::Ok, "/dev/fuse", "readable and writable")
    } else {
        finding(
            Verdict::Fail,
            "/dev/fuse",
            "not readable and writable by you: make it mode 0666 (as fuse3 installs it), or add yourself to the group that owns it",
        )
    }
}

fn allow_other() -> Finding {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return finding(
            Verdict::Ok,
            "allow_other",
            "running as root: --allow-other lets music servers running as other users read the mount",
        );
    }
    let set = std::fs::read_to_string("/etc/fuse.conf").is_ok_and(|text| {
        text.lines()
            .any(|line| line.split('#').next().unwrap_or("").trim() == "user_allow_other")
    });
    if set {
        finding(
            Verdict::Ok,
            "allow_other",
            "user_allow_other is set in /etc/fuse.conf: --allow-other works",
        )
    } else {
        finding(
            Verdict::Warn,
            "allow_other",
            "user_allow_other is not set in /etc/fuse.conf: a music server running as another user cannot read the mount; add the line, then mount with --allow-other",
        )
    }
}

/// The plugins folder, then each configured origin opened by its plugin,
/// in a manager of the doctor's own (its copies in a folder of its own).
async fn plugins_and_origins(options: &DaemonOptions, config: &Config) -> Vec<Finding> {
    let dir = &options.plugins_dir;
    let mut found = Vec::new();
    let verdicts = match crate::plugins::folder::inspect(dir, &plugin_processes(config)).await {
        Ok(verdicts) => verdicts,
        Err(e) => {
            found.push(finding(
                Verdict::Fail,
                "plugins",
                format!(
                    "cannot read {}: {e}; give --plugins or set MUSICFS_PLUGINS",
                    dir.display()
                ),
            ));
            return found;
        }
    };
    let kinds: Vec<String> = verdicts
        .iter()
        .filter_map(|(_, v)| match v {
            crate::plugins::folder::Verdict::Loaded { info, .. } => Some(info.kind.clone()),
            _ => None,
        })
        .collect();
    for (file, verdict) in &verdicts {
        if let crate::plugins::folder::Verdict::Rejected(why) = verdict {
            found.push(finding(
                Verdict::Warn,
                "plugins",
                format!("{} does not load: {why}", file.display()),
            ));
        }
    }
    found.push(finding(
        if kinds.is_empty() {
            Verdict::Fail
        } else {
            Verdict::Ok
        },
        "plugins",
        if kinds.is_empty() {
            format!(
                "no plugin in {}: put the plugins there (libmusicfs_*.so), or give --plugins",
                dir.display()
            )
        } else {
            format!("{} in {}", kinds.join(", "), dir.display())
        },
    ));
    let origins: Vec<_> = config.origins.iter().filter(|o| o.enabled).collect();
    if origins.is_empty() {
        found.push(finding(
            Verdict::Warn,
            "origins",
            "none configured: a mount shows a generated sample library; give --config FILE or --origin KIND:LOCATION",
        ));
        return found;
    }
    let scratch = match private_folder() {
        Ok(scratch) => scratch,
        Err(e) => {
            found.push(finding(
                Verdict::Fail,
                "origins",
                format!("cannot make a temporary folder to open them in: {e}"),
            ));
            return found;
        }
    };
    let events = EventBus::default();
    let registry = Arc::new(Registry::new(events.clone()));
    let manager = PluginManager::new(
        dir.clone(),
        &scratch,
        config.origins.clone(),
        config.health.clone(),
        plugin_processes(config),
        registry.clone(),
        events,
    );
    manager.sync().await;
    let waiting = manager.waiting_reasons();
    for origin in origins {
        let what = format!("origin {} ({})", origin.id, origin.kind);
        if !kinds.contains(&origin.kind) {
            found.push(finding(
                Verdict::Fail,
                what,
                format!(
                    "no plugin serves kind {}: put libmusicfs_{}.so in {}",
                    origin.kind,
                    origin.kind,
                    dir.display()
                ),
            ));
            continue;
        }
        let Some(registered) = registry.get(&origin.id) else {
            let why = waiting
                .get(&origin.id)
                .cloned()
                .unwrap_or_else(|| "it did not open".into());
            found.push(finding(Verdict::Fail, what, advice(&why)));
            continue;
        };
        let health = registered.health().await;
        found.push(match health.status {
            HealthStatus::Healthy => finding(Verdict::Ok, what, "reachable, logged in"),
            HealthStatus::Degraded => finding(Verdict::Warn, what, advice(&health.reason)),
            HealthStatus::Unhealthy => finding(Verdict::Fail, what, advice(&health.reason)),
        });
    }
    for id in registry.all().iter().map(|o| o.id.clone()) {
        registry.unregister(&id).await;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    found
}

/// A new folder of the doctor's own in the temporary folder, only its
/// user's (0700), never one that was there: the plugin copies it loads are
/// made in it, and a folder another user made ready could hand it theirs.
fn private_folder() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut last = None;
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("musicfs-doctor-{}-{nanos:x}-{attempt}", std::process::id());
        let folder = std::env::temp_dir().join(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&folder) {
            Ok(()) => return Ok(folder),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// What a plugin said of an origin, with what to do about it.
pub fn advice(reason: &str) -> String {
    let lower = reason.to_lowercase();
    let todo = if [
        "authentication",
        "password",
        "denied",
        "credentials",
        "signature",
        "access key",
        "forbidden",
    ]
    .iter()
    .any(|k| lower.contains(k))
    {
        "check its user and password (or keys) in the config"
    } else if [
        "unreachable",
        "refused",
        "timed out",
        "no route",
        "resolve",
        "connect",
    ]
    .iter()
    .any(|k| lower.contains(k))
    {
        "check its host and port, and that the server is up and reachable from here"
    } else if ["host key", "known_hosts", "fingerprint"]
        .iter()
        .any(|k| lower.contains(k))
    {
        "check the server's host key against known_hosts"
    } else if ["not found", "no such", "does not exist", "nosuchbucket"]
        .iter()
        .any(|k| lower.contains(k))
    {
        "check the path, share, export or bucket it names"
    } else {
        "see the reason; `musicfs mount` logs more"
    };
    format!("{reason}: {todo}")
}

fn cache_disk(dir: &Path, config: &Config) -> Finding {
    let limit = (config.cache.content_cache_gb * 1e9) as u64;
    // The folder, or the nearest one above it that exists (a first mount
    // makes it).
    let mut existing = dir.to_path_buf();
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent.to_path_buf(),
            None => break,
        }
    }
    let Ok(c_path) = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()) else {
        return finding(
            Verdict::Fail,
            "cache",
            format!("{} is not a usable path", dir.display()),
        );
    };
    // SAFETY: access reads a NUL-terminated path.
    if unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } != 0 {
        return finding(
            Verdict::Fail,
            "cache",
            format!(
                "{} is not writable by you: give --cache-dir, or cache_dir in the config",
                existing.display()
            ),
        );
    }
    // SAFETY: statvfs fills the struct it is given for a NUL-terminated path.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
        return finding(
            Verdict::Warn,
            "cache",
            format!("cannot tell the free space of {}", existing.display()),
        );
    }
    let free = stats.f_bavail as u64 * stats.f_frsize as u64;
    let gb = |b: u64| format!("{:.1} GB", b as f64 / 1e9);
    if free < limit {
        finding(
            Verdict::Warn,
            "cache",
            format!(
                "{}: {} free for a {} limit: the cache stops short of its limit (lower [cache] content_cache_gb, or free space)",
                dir.display(),
                gb(free),
                gb(limit)
            ),
        )
    } else {
        finding(
            Verdict::Ok,
            "cache",
            format!(
                "{}: {} free for a {} limit",
                dir.display(),
                gb(free),
                gb(limit)
            ),
        )
    }
}

fn passthrough(config: &Config) -> Finding {
    if !config.cache.passthrough {
        return finding(
            Verdict::Ok,
            "passthrough",
            "off in the config: cached files are served by the daemon",
        );
    }
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    match (version >= (6, 9), root) {
        (true, true) => finding(
            Verdict::Ok,
            "passthrough",
            format!(
                "kernel {} and root: fully cached files are read by the kernel",
                release.trim()
            ),
        ),
        (false, _) => finding(
            Verdict::Warn,
            "passthrough",
            format!(
                "kernel {} is older than 6.9: cached files are served by the daemon (works, slower)",
                release.trim()
            ),
        ),
        (true, false) => finding(
            Verdict::Warn,
            "passthrough",
            "needs root: cached files are served by the daemon (works, slower)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_gets_what_to_do() {
        assert!(advice("authentication failed for user music").contains("password"));
        assert!(advice("unreachable: connection refused").contains("host and port"));
        assert!(advice("NoSuchBucket: no such bucket").contains("bucket"));
        let line = finding(Verdict::Fail, "fuse", "missing").to_string();
        assert_eq!(line, "FAIL fuse: missing");
    }

    /// The doctor loads plugin copies from its scratch folder: one another
    /// user could make ready in advance would hand it theirs (a review
    /// found the folder's name guessable and reused).
    #[test]
    fn the_scratch_folder_is_new_and_its_users_alone() {
        use std::os::unix::fs::PermissionsExt;
        let (a, b) = (private_folder().unwrap(), private_folder().unwrap());
        assert_ne!(a, b);
        let mode = std::fs::metadata(&a).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir(a).unwrap();
        std::fs::remove_dir(b).unwrap();
    }
}
