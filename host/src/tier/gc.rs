//! The tier's size limit, kept across mounts, and its tidying. Every mount
//! that publishes renews its session (`sessions/<mount>`) while it runs:
//! when it expires, which packs it read lately (their last use), and which
//! packs hold the files it pins. One mount at a time (the `gc` lease, as for
//! scans, renewed between steps) sweeps when the packs pass the limit:
//! least recently used first, never a pack younger than the grace window
//! (an upload whose manifest is not written yet looks unused), never a pack
//! a live session pins.
//!
//! A sweep lists the packs and reads the sessions, nothing else: it does not
//! read every manifest to find the ones naming a pack it took. A manifest
//! may so name a pack that is gone; a reader that meets one reads from the
//! origin (a miss, never an error) and, if it publishes, deletes that
//! manifest so the version is published afresh. The same mount then
//! tidies, a bounded amount each time:
//! - sessions and scan leases that ended more than the grace window ago;
//! - each origin's index: the head of a mount with no live session, older
//!   than the grace window and not the newest head, and then every segment
//!   no head kept names and older than the grace window (a publish writes
//!   its segments before its head);
//! - [`MANIFESTS_CHECKED`] manifests, a different stretch of them each
//!   time: a damaged one, one older than the grace window that names a
//!   pack the listing does not hold, and one of the layout before each file
//!   had a folder of its own (no mount asks for those).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bucket::{Bucket, Listed, TierError, TierResult};
use super::lease;
use super::library::Head;
use super::manifest::{pack_key, TierManifest};

/// Manifests a tidy reads, at most.
pub const MANIFESTS_CHECKED: usize = 256;

/// A mount's session as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The mount.
    pub mount: String,
    /// Until when it holds unless renewed (seconds since the epoch).
    pub until: u64,
    /// Packs it read lately, and when (their names in hex).
    #[serde(default)]
    pub touched: Vec<(String, u64)>,
    /// Packs that hold the files it pins.
    #[serde(default)]
    pub pinned: Vec<String>,
}

/// What a sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Bytes of packs before.
    pub before: u64,
    /// Packs deleted, and their bytes.
    pub packs: u64,
    pub bytes: u64,
}

/// A pack listed, with its last use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackUse {
    /// Its name (hex).
    pub name: String,
    /// Its size.
    pub size: u64,
    /// When it was written (store's clock).
    pub written: u64,
    /// When a mount last said it read it (or when it was written).
    pub last_use: u64,
}

/// The packs to delete so that `packs` fit in `limit`: least recently used
/// first, none written within `grace` of `now`, none in `pinned`.
pub fn victims(
    packs: &[PackUse],
    pinned: &HashSet<String>,
    limit: u64,
    grace: Duration,
    now: u64,
) -> Vec<PackUse> {
    let mut total: u64 = packs.iter().map(|p| p.size).sum();
    let mut candidates: Vec<&PackUse> = packs
        .iter()
        .filter(|p| !pinned.contains(&p.name) && p.written + grace.as_secs() <= now)
        .collect();
    candidates.sort_by(|a, b| (a.last_use, &a.name).cmp(&(b.last_use, &b.name)));
    let mut out = Vec::new();
    for pack in candidates {
        if total <= limit {
            break;
        }
        total -= pack.size;
        out.push(pack.clone());
    }
    out
}

/// The sessions in the tier, each with its key.
pub async fn read_sessions(bucket: &Bucket) -> TierResult<Vec<(String, Session)>> {
    let mut out = Vec::new();
    for listed in bucket.list("sessions/").await? {
        let bytes = match bucket.get(&listed.key).await {
            Ok(bytes) => bytes,
            Err(TierError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<Session>(&bytes) {
            Ok(session) => out.push((listed.key, session)),
            // Unreadable: it pins nothing, and a tidy takes it (its `until`
            // is taken as 0).
            Err(_) => {
                tracing::warn!(key = listed.key, "refused a damaged session in the tier");
                out.push((listed.key, Session::default()));
            }
        }
    }
    Ok(out)
}

/// Of `sessions` at `now`: the live ones' pins, and every session's last
/// uses.
pub fn pins_and_uses(
    sessions: &[(String, Session)],
    now: u64,
) -> (HashSet<String>, HashMap<String, u64>) {
    let mut pinned = HashSet::new();
    let mut used: HashMap<String, u64> = HashMap::new();
    for (_, session) in sessions {
        for (pack, at) in &session.touched {
            let last = used.entry(pack.clone()).or_default();
            *last = (*last).max(*at);
        }
        if session.until > now {
            pinned.extend(session.pinned.iter().cloned());
        }
    }
    (pinned, used)
}

/// The sweep lease, held by one mount at a time.
pub const SWEEP_LEASE: &str = "\0sweep";

/// The sweep lease as this mount holds it: renewed between steps, so that a
/// long sweep is not taken over by another mount halfway.
pub struct Holding<'a> {
    pub mount: &'a str,
    /// When it was taken (ms).
    pub taken: u64,
    pub ttl: Duration,
}

impl Holding<'_> {
    async fn renew(&self, bucket: &Bucket) {
        let now = unix_now();
        if let Err(e) =
            lease::write(bucket, SWEEP_LEASE, self.mount, self.taken, now, self.ttl).await
        {
            tracing::debug!("cannot renew the sweep lease: {e}");
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sweeps the tier down to `limit` bytes of packs (see the essay): packs
/// only, the manifests naming them left for readers and [`tidy`].
pub async fn sweep(
    bucket: &Bucket,
    sessions: &[(String, Session)],
    limit: u64,
    grace: Duration,
    now: u64,
    holding: &Holding<'_>,
) -> TierResult<Swept> {
    let listed = bucket.list("packs/").await?;
    let before: u64 = listed.iter().map(|l| l.size).sum();
    let mut swept = Swept {
        before,
        ..Swept::default()
    };
    if before <= limit {
        return Ok(swept);
    }
    let (pinned, used) = pins_and_uses(sessions, now);
    let packs: Vec<PackUse> = listed
        .iter()
        .filter_map(|l| {
            let name = l.key.strip_prefix("packs/")?.to_owned();
            let written = l.modified.max(0) as u64;
            let last_use = used.get(&name).copied().unwrap_or(0).max(written);
            Some(PackUse {
                name,
                size: l.size,
                written,
                last_use,
            })
        })
        .collect();
    for (n, pack) in victims(&packs, &pinned, limit, grace, now)
        .into_iter()
        .enumerate()
    {
        if n % 64 == 63 {
            holding.renew(bucket).await;
        }
        bucket.delete(&format!("packs/{}", pack.name)).await?;
        swept.packs += 1;
        swept.bytes += pack.size;
    }
    Ok(swept)
}

/// What a tidy deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tidied {
    pub sessions: u64,
    pub leases: u64,
    pub heads: u64,
    pub segments: u64,
    pub manifests: u64,
}

impl Tidied {
    /// Objects deleted in all.
    pub fn objects(&self) -> u64 {
        self.sessions + self.leases + self.heads + self.segments + self.manifests
    }
}

/// Whether `at` (a session's or lease's end, an object's writing) is more
/// than `grace` before `now`.
pub fn past(at: u64, grace: Duration, now: u64) -> bool {
    at + grace.as_secs() < now
}

/// Of one origin's `heads`, the mounts whose head goes: no live session
/// (`live`), scanned more than `grace` before `now`, and not the newest.
pub fn stale_heads(
    heads: &[Head],
    live: &HashSet<String>,
    grace: Duration,
    now: u64,
) -> Vec<String> {
    let newest = heads
        .iter()
        .max_by_key(|h| (h.scanned, h.mount.clone()))
        .map(|h| h.mount.clone());
    heads
        .iter()
        .filter(|h| {
            Some(&h.mount) != newest.as_ref()
                && !live.contains(&h.mount)
                && past(h.scanned, grace, now)
        })
        .map(|h| h.mount.clone())
        .collect()
}

/// Of the segments `listed` (name, written), those that none of `kept`
/// names and that were written more than `grace` before `now`.
pub fn unnamed_segments(
    listed: &[(String, u64)],
    kept: &[Head],
    grace: Duration,
    now: u64,
) -> Vec<String> {
    let named: HashSet<&String> = kept.iter().flat_map(|h| &h.segments).collect();
    listed
        .iter()
        .filter(|(name, written)| !named.contains(name) && past(*written, grace, now))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Tidies the tier (see the essay), `sessions` as read for this round.
pub async fn tidy(
    bucket: &Bucket,
    sessions: &[(String, Session)],
    grace: Duration,
    now: u64,
    holding: &Holding<'_>,
) -> TierResult<Tidied> {
    let mut tidied = Tidied::default();
    let mut live = HashSet::new();
    for (key, session) in sessions {
        if past(session.until, grace, now) {
            bucket.delete(key).await?;
            tidied.sessions += 1;
        } else {
            live.insert(session.mount.clone());
        }
    }
    for listed in bucket.list("leases/").await? {
        let until = match bucket.get(&listed.key).await {
            Ok(bytes) => serde_json::from_slice::<lease::Lease>(&bytes).map_or(0, |l| l.until),
            Err(TierError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        if past(until, grace, now) {
            bucket.delete(&listed.key).await?;
            tidied.leases += 1;
        }
    }
    holding.renew(bucket).await;

    // Each origin's index, folder by folder.
    let mut folders: HashMap<String, Vec<Listed>> = HashMap::new();
    for listed in bucket.list("index/").await? {
        let mut parts = listed.key.splitn(3, '/');
        if let (Some(_), Some(folder)) = (parts.next(), parts.next()) {
            folders.entry(folder.to_owned()).or_default().push(listed);
        }
    }
    for (folder, objects) in folders {
        let mut heads = Vec::new();
        let mut segments = Vec::new();
        for listed in objects {
            let rest = &listed.key[format!("index/{folder}/").len()..];
            if let Some(name) = rest.strip_prefix("segments/") {
                segments.push((name.to_owned(), listed.modified.max(0) as u64));
            } else if rest.starts_with("heads/") {
                match bucket.get(&listed.key).await {
                    Ok(bytes) => match serde_json::from_slice::<Head>(&bytes) {
                        Ok(head) => heads.push(head),
                        // A damaged head holds nothing: readers refuse it.
                        Err(_) => {
                            bucket.delete(&listed.key).await?;
                            tidied.heads += 1;
                        }
                    },
                    Err(TierError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let stale = stale_heads(&heads, &live, grace, now);
        for mount in &stale {
            bucket
                .delete(&format!("index/{folder}/heads/{mount}"))
                .await?;
            tidied.heads += 1;
        }
        heads.retain(|h| !stale.contains(&h.mount));
        for name in unnamed_segments(&segments, &heads, grace, now) {
            bucket
                .delete(&format!("index/{folder}/segments/{name}"))
                .await?;
            tidied.segments += 1;
        }
        holding.renew(bucket).await;
    }

    // A stretch of the manifests, a different one each round.
    let packs: HashSet<String> = bucket
        .list("packs/")
        .await?
        .into_iter()
        .filter_map(|l| l.key.strip_prefix("packs/").map(str::to_owned))
        .collect();
    let manifests = bucket.list("manifests/").await?;
    let start = if manifests.is_empty() {
        0
    } else {
        (blake3::hash(&now.to_le_bytes()).as_bytes()[0] as usize * manifests.len() / 256)
            % manifests.len()
    };
    for (n, listed) in manifests
        .iter()
        .cycle()
        .skip(start)
        .take(MANIFESTS_CHECKED.min(manifests.len()))
        .enumerate()
    {
        if n % 64 == 63 {
            holding.renew(bucket).await;
        }
        // A manifest of the layout before each file had a folder of its
        // own: no mount asks for it any more.
        let old_layout = listed.key.matches('/').count() == 1;
        if old_layout {
            bucket.delete(&listed.key).await?;
            tidied.manifests += 1;
            continue;
        }
        if !past(listed.modified.max(0) as u64, grace, now) {
            continue;
        }
        let bytes = match bucket.get(&listed.key).await {
            Ok(bytes) => bytes,
            Err(TierError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        // A pack the listing lacks is asked after once more: the manifest
        // may have been rewritten since, naming packs written since.
        let names_gone = match TierManifest::packs_named(&bytes) {
            None => true,
            Some(named) => {
                let mut gone = false;
                for pack in named {
                    let key = pack_key(&pack);
                    if !packs.contains(&key["packs/".len()..])
                        && matches!(bucket.exists(&key).await, Ok(false))
                    {
                        gone = true;
                        break;
                    }
                }
                gone
            }
        };
        if names_gone {
            bucket.delete(&listed.key).await?;
            tidied.manifests += 1;
        }
    }
    Ok(tidied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(name: &str, size: u64, written: u64, last_use: u64) -> PackUse {
        PackUse {
            name: name.into(),
            size,
            written,
            last_use,
        }
    }

    #[test]
    fn the_least_recently_used_go_first_but_not_young_or_pinned_ones() {
        let packs = [
            pack("a", 10, 100, 500),
            pack("b", 10, 100, 200),
            pack("c", 10, 100, 300),
            pack("d", 10, 990, 990),
            pack("e", 10, 100, 100),
        ];
        let pinned: HashSet<String> = ["e".to_owned()].into();
        let grace = Duration::from_secs(60);
        let names = |v: Vec<PackUse>| v.into_iter().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(names(victims(&packs, &pinned, 30, grace, 1000)), ["b", "c"]);
        assert_eq!(
            names(victims(&packs, &pinned, 50, grace, 1000)),
            Vec::<String>::new()
        );
        // Under the limit only by deleting young or pinned packs: it stops short.
        assert_eq!(
            names(victims(&packs, &pinned, 0, grace, 1000)),
            ["b", "c", "a"]
        );
    }

    fn head(mount: &str, scanned: u64, segments: &[&str]) -> Head {
        Head {
            origin: "nas".into(),
            mount: mount.into(),
            scanned,
            records: 0,
            segments: segments.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn heads_of_gone_mounts_go_but_never_the_newest_and_segments_go_once_unnamed() {
        let grace = Duration::from_secs(60);
        let heads = [
            head("gone-old", 100, &["s1", "s2"]),
            head("alive-old", 100, &["s2"]),
            head("gone-young", 990, &["s3"]),
            head("gone-newest", 995, &["s4"]),
        ];
        let live: HashSet<String> = ["alive-old".to_owned()].into();
        assert_eq!(stale_heads(&heads, &live, grace, 1000), ["gone-old"]);
        // Nobody alive at all: the newest head stays, whatever its age.
        assert_eq!(
            stale_heads(&heads, &HashSet::new(), grace, 10_000),
            ["gone-old", "alive-old", "gone-young"]
        );
        let kept: Vec<Head> = heads[1..].to_vec();
        let listed: Vec<(String, u64)> = [("s1", 100), ("s2", 100), ("s5", 100), ("s6", 990)]
            .iter()
            .map(|(n, at)| (n.to_string(), *at))
            .collect();
        // s1 only the dropped head named; s5 none; s6 is young (a publish
        // writes segments before its head).
        assert_eq!(unnamed_segments(&listed, &kept, grace, 1000), ["s1", "s5"]);
    }

    #[test]
    fn only_live_sessions_pin_but_every_session_says_what_it_used() {
        let session = |mount: &str, until, touched: &[(&str, u64)], pinned: &[&str]| {
            (
                format!("sessions/{mount}"),
                Session {
                    mount: mount.into(),
                    until,
                    touched: touched.iter().map(|(p, at)| (p.to_string(), *at)).collect(),
                    pinned: pinned.iter().map(|p| p.to_string()).collect(),
                },
            )
        };
        let sessions = [
            session("live", 2000, &[("a", 500)], &["p"]),
            session("dead", 900, &[("a", 700), ("b", 300)], &["q"]),
        ];
        let (pinned, used) = pins_and_uses(&sessions, 1000);
        assert_eq!(pinned, ["p".to_owned()].into());
        assert_eq!(used["a"], 700);
        assert_eq!(used["b"], 300);
        assert!(!past(900, Duration::from_secs(60), 960));
        assert!(past(900, Duration::from_secs(60), 961));
    }
}
