//! Scan leases: two mounts that start together with nothing to go on do not
//! both scan an origin (a million tag reads over a slow link each). Before
//! such a scan a mount writes its lease (`leases/scan/<origin>/<mount>`,
//! with when it took it and until when it holds), then lists the origin's
//! leases: it scans if its own is the oldest one still live (ties by mount
//! id), and otherwise gives its own back and waits for the holder's index.
//! The holder renews its lease while it scans; a holder that dies stops
//! renewing, its lease runs out, and a waiting mount scans instead.
//!
//! Without conditional writes (Garage has none) this is advisory: two mounts
//! whose writes and listings cross may both scan. Garage reads its own
//! writes, so of two mounts the one that lists second sees the other's
//! lease; both scan only if each listed before the other's write was
//! stored. A double scan costs work, never records.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bucket::{Bucket, TierError, TierResult};
use super::library::origin_folder;

/// A lease as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The mount that holds it.
    pub mount: String,
    /// When it was taken (milliseconds since the epoch: two mounts that
    /// start in the same second are still told apart by it).
    pub taken: u64,
    /// Until when it holds unless renewed.
    pub until: u64,
}

/// What asking for a lease gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asked {
    /// This mount scans.
    Taken,
    /// Another mount scans: wait for its index.
    HeldBy(Lease),
}

fn folder(origin: &str) -> String {
    format!("leases/scan/{}", &origin_folder(origin)["index/".len()..])
}

/// Writes (or renews) `mount`'s lease on scanning `origin`, taken at
/// `taken`, for `ttl` from `now`.
pub async fn write(
    bucket: &Bucket,
    origin: &str,
    mount: &str,
    taken: u64,
    now: u64,
    ttl: Duration,
) -> TierResult<()> {
    let lease = Lease {
        mount: mount.to_owned(),
        taken,
        until: now + ttl.as_secs(),
    };
    let bytes = serde_json::to_vec(&lease).expect("a lease serialises");
    bucket
        .put(&format!("{}/{mount}", folder(origin)), bytes)
        .await
}

/// The live leases on scanning `origin` at `now`, oldest first.
pub async fn live(bucket: &Bucket, origin: &str, now: u64) -> TierResult<Vec<Lease>> {
    let mut leases = Vec::new();
    for listed in bucket.list(&format!("{}/", folder(origin))).await? {
        match bucket.get(&listed.key).await {
            Ok(bytes) => match serde_json::from_slice::<Lease>(&bytes) {
                Ok(lease) if lease.until > now => leases.push(lease),
                Ok(_) => {}
                Err(_) => tracing::warn!(key = listed.key, "refused a damaged lease in the tier"),
            },
            Err(TierError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    leases.sort_by(|a, b| (a.taken, &a.mount).cmp(&(b.taken, &b.mount)));
    Ok(leases)
}

/// Asks for the lease on scanning `origin` for `mount` (see the essay), at
/// `now` (seconds) and `taken` (milliseconds) since the epoch.
pub async fn ask(
    bucket: &Bucket,
    origin: &str,
    mount: &str,
    now: u64,
    taken: u64,
    ttl: Duration,
) -> TierResult<Asked> {
    write(bucket, origin, mount, taken, now, ttl).await?;
    let leases = live(bucket, origin, now).await?;
    match leases.into_iter().next() {
        Some(first) if first.mount != mount => {
            release(bucket, origin, mount).await?;
            Ok(Asked::HeldBy(first))
        }
        _ => Ok(Asked::Taken),
    }
}

/// Gives `mount`'s lease on scanning `origin` back.
pub async fn release(bucket: &Bucket, origin: &str, mount: &str) -> TierResult<()> {
    bucket.delete(&format!("{}/{mount}", folder(origin))).await
}
