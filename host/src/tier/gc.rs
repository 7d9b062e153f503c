//! The tier's size limit, kept across mounts. Every mount that publishes
//! renews its session (`sessions/<mount>`) while it runs: when it expires,
//! which packs it read lately (their last use), and which packs hold the
//! files it pins. One mount at a time (the `gc` lease, as for scans) sweeps
//! when the packs pass the limit: least recently used first, never a pack
//! younger than the grace window (an upload whose manifest is not written
//! yet looks unused), never a pack a live session pins. A manifest that
//! names a pack swept goes too, so no mount is sent to a pack that is gone
//! (if one was, it reads from the origin: a miss, never an error).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bucket::{Bucket, TierError, TierResult};
use super::manifest::{pack_key, TierManifest};

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
    /// Manifests deleted with them.
    pub manifests: u64,
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

/// Reads the sessions: the live ones' pins, and every session's last uses.
pub async fn sessions(
    bucket: &Bucket,
    now: u64,
) -> TierResult<(HashSet<String>, HashMap<String, u64>)> {
    let mut pinned = HashSet::new();
    let mut used: HashMap<String, u64> = HashMap::new();
    for listed in bucket.list("sessions/").await? {
        let bytes = match bucket.get(&listed.key).await {
            Ok(bytes) => bytes,
            Err(TierError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let Ok(session) = serde_json::from_slice::<Session>(&bytes) else {
            tracing::warn!(key = listed.key, "refused a damaged session in the tier");
            continue;
        };
        for (pack, at) in session.touched {
            let last = used.entry(pack).or_default();
            *last = (*last).max(at);
        }
        if session.until > now {
            pinned.extend(session.pinned);
        }
    }
    Ok((pinned, used))
}

/// Sweeps the tier down to `limit` bytes of packs (see the essay).
pub async fn sweep(bucket: &Bucket, limit: u64, grace: Duration, now: u64) -> TierResult<Swept> {
    let listed = bucket.list("packs/").await?;
    let before: u64 = listed.iter().map(|l| l.size).sum();
    let mut swept = Swept {
        before,
        ..Swept::default()
    };
    if before <= limit {
        return Ok(swept);
    }
    let (pinned, used) = sessions(bucket, now).await?;
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
    let gone: HashSet<String> = victims(&packs, &pinned, limit, grace, now)
        .into_iter()
        .map(|p| {
            swept.packs += 1;
            swept.bytes += p.size;
            p.name
        })
        .collect();
    if gone.is_empty() {
        return Ok(swept);
    }
    // The manifests first: a manifest never names a pack that is gone.
    for listed in bucket.list("manifests/").await? {
        let bytes = match bucket.get(&listed.key).await {
            Ok(bytes) => bytes,
            Err(TierError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let names_gone = TierManifest::packs_named(&bytes).is_none_or(|packs| {
            packs
                .iter()
                .any(|p| gone.contains(&pack_key(p)["packs/".len()..]))
        });
        if names_gone {
            bucket.delete(&listed.key).await?;
            swept.manifests += 1;
        }
    }
    for name in &gone {
        bucket.delete(&format!("packs/{name}")).await?;
    }
    Ok(swept)
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
}
