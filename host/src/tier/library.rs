//! The library index in the tier: what one mount's scan of an origin found
//! (every file's record: path, version, tags), for the other mounts to show
//! without scanning.
//!
//! An origin's records, sorted by path, are cut into segments where a
//! record's key hashes to a boundary (one in [`SEGMENT_EVERY`] on average),
//! so a change to one file changes one segment and the others keep their
//! names: a mount publishes only the segments the tier lacks. Each segment
//! is an immutable object named by the BLAKE3 of its bytes, holding the
//! origin's id, the records as JSON lines, and a checksum. A mount's head
//! (`index/<origin>/heads/<mount>`) lists the segments of its last complete
//! scan of that origin, with when it was made; a reader takes the newest
//! head, and refuses it whole if any segment is missing, damaged or of
//! another origin.

use serde::{Deserialize, Serialize};

use super::bucket::{Bucket, TierError, TierResult};
use crate::library::index::FileRecord;

/// Records in a segment, on average.
pub const SEGMENT_EVERY: u64 = 4096;

const MAGIC: &[u8; 8] = b"MFTIERS1";

/// A mount's head for one origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The origin's id.
    pub origin: String,
    /// The mount that scanned.
    pub mount: String,
    /// When its scan finished (seconds since the epoch).
    pub scanned: u64,
    /// How many records the segments hold.
    pub records: u64,
    /// The segments, in order.
    pub segments: Vec<String>,
}

/// The folder of `origin`'s index in the tier.
pub fn origin_folder(origin: &str) -> String {
    format!("index/{}", &blake3::hash(origin.as_bytes()).to_hex()[..16])
}

/// `records` of `origin` as segments: (name, bytes).
pub fn segments(origin: &str, records: &mut [FileRecord]) -> Vec<(String, Vec<u8>)> {
    records.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = Vec::new();
    let mut start = 0;
    for (i, record) in records.iter().enumerate() {
        let hash = blake3::hash(record.path.as_bytes());
        let boundary = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
            % SEGMENT_EVERY
            == 0;
        if boundary || i + 1 == records.len() {
            out.push(encode(origin, &records[start..=i]));
            start = i + 1;
        }
    }
    out
}

fn encode(origin: &str, records: &[FileRecord]) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(origin.len() as u32).to_le_bytes());
    bytes.extend_from_slice(origin.as_bytes());
    for record in records {
        serde_json::to_writer(&mut bytes, record).expect("records serialise");
        bytes.push(b'\n');
    }
    let sum = blake3::hash(&bytes);
    bytes.extend_from_slice(sum.as_bytes());
    (blake3::hash(&bytes).to_hex().to_string(), bytes)
}

/// The records of a segment named `name`, if it is whole, of `origin`, and
/// has that name.
pub fn decode(origin: &str, name: &str, bytes: &[u8]) -> Result<Vec<FileRecord>, String> {
    if blake3::hash(bytes).to_hex().as_str() != name {
        return Err("its bytes are not its name".into());
    }
    let body = bytes
        .len()
        .checked_sub(32)
        .map(|n| &bytes[..n])
        .ok_or("too short")?;
    let rest = body.strip_prefix(MAGIC).ok_or("not a segment")?;
    let len = u32::from_le_bytes(rest.get(..4).ok_or("cut short")?.try_into().expect("4")) as usize;
    let named = rest.get(4..4 + len).ok_or("cut short")?;
    if named != origin.as_bytes() {
        return Err("a segment of another origin".into());
    }
    rest[4 + len..]
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let record: FileRecord =
                serde_json::from_slice(line).map_err(|e| format!("a bad record: {e}"))?;
            if record.origin != origin {
                return Err("a record of another origin".to_owned());
            }
            Ok(record)
        })
        .collect()
}

/// Publishes `records` (a complete scan of `origin`) as `mount`'s head.
pub async fn publish(
    bucket: &Bucket,
    origin: &str,
    mount: &str,
    scanned: u64,
    mut records: Vec<FileRecord>,
) -> TierResult<u64> {
    let folder = origin_folder(origin);
    let count = records.len() as u64;
    let segments = segments(origin, &mut records);
    drop(records);
    let held: std::collections::HashSet<String> = bucket
        .list(&format!("{folder}/segments/"))
        .await?
        .into_iter()
        .filter_map(|l| l.key.rsplit('/').next().map(str::to_owned))
        .collect();
    let mut written = 0;
    let mut names = Vec::with_capacity(segments.len());
    for (name, bytes) in segments {
        if !held.contains(&name) {
            written += bytes.len() as u64;
            bucket
                .put(&format!("{folder}/segments/{name}"), bytes)
                .await?;
        }
        names.push(name);
    }
    let head = Head {
        origin: origin.to_owned(),
        mount: mount.to_owned(),
        scanned,
        records: count,
        segments: names,
    };
    let bytes = serde_json::to_vec(&head).expect("a head serialises");
    written += bytes.len() as u64;
    bucket
        .put(&format!("{folder}/heads/{mount}"), bytes)
        .await?;
    Ok(written)
}

/// The newest head of `origin` in the tier, with the bytes read; `None` if
/// there is none.
pub async fn newest_head(bucket: &Bucket, origin: &str) -> TierResult<(Option<Head>, u64)> {
    let folder = origin_folder(origin);
    let mut heads = Vec::new();
    let mut read = 0u64;
    for listed in bucket.list(&format!("{folder}/heads/")).await? {
        let bytes = match bucket.get(&listed.key).await {
            Ok(bytes) => bytes,
            // Gone since it was listed (its mount replaced it).
            Err(TierError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        read += bytes.len() as u64;
        match serde_json::from_slice::<Head>(&bytes) {
            Ok(head) if head.origin == origin => heads.push(head),
            _ => tracing::warn!(
                key = listed.key,
                "refused a damaged or foreign head in the tier"
            ),
        }
    }
    let newest = heads
        .into_iter()
        .max_by_key(|h| (h.scanned, h.mount.clone()));
    Ok((newest, read))
}

/// The records `head` lists, with the bytes read: all of them, or an error
/// if any segment is missing, damaged or of another origin.
pub async fn records_of(bucket: &Bucket, head: &Head) -> TierResult<(Vec<FileRecord>, u64)> {
    let origin = &head.origin;
    let folder = origin_folder(origin);
    let mut read = 0u64;
    let mut records = Vec::with_capacity(head.records as usize);
    for name in &head.segments {
        let bytes = bucket.get(&format!("{folder}/segments/{name}")).await?;
        read += bytes.len() as u64;
        let mut got = decode(origin, name, &bytes)
            .map_err(|why| TierError::Damaged(format!("segment {name} of {origin}: {why}")))?;
        records.append(&mut got);
    }
    if records.len() as u64 != head.records {
        return Err(TierError::Damaged(format!(
            "the head of {origin} counts {} records, its segments hold {}",
            head.records,
            records.len()
        )));
    }
    Ok((records, read))
}

/// The newest head of `origin` in the tier and its records, with the bytes
/// read; `None` if there is none.
pub async fn newest(
    bucket: &Bucket,
    origin: &str,
) -> TierResult<Option<(Head, Vec<FileRecord>, u64)>> {
    let (head, head_bytes) = newest_head(bucket, origin).await?;
    let Some(head) = head else {
        return Ok(None);
    };
    let (records, bytes) = records_of(bucket, &head).await?;
    Ok(Some((head, records, head_bytes + bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::index::FileRole;

    fn record(path: &str) -> FileRecord {
        FileRecord {
            origin: "nas".into(),
            path: path.into(),
            size: 10,
            mtime_ns: 1,
            version: None,
            role: FileRole::Audio,
            tags: Default::default(),
            problem: None,
            pending_reads: 0,
            unseen: false,
        }
    }

    #[test]
    fn segments_read_back_and_one_change_renames_one_segment() {
        let mut records: Vec<FileRecord> = (0..20_000)
            .map(|i| record(&format!("a/{i:06}.flac")))
            .collect();
        let before = segments("nas", &mut records);
        assert!(before.len() > 1, "{} segments", before.len());
        let mut back = Vec::new();
        for (name, bytes) in &before {
            back.extend(decode("nas", name, bytes).unwrap());
        }
        assert_eq!(back, records);
        records[7_000].size = 11;
        let after = segments("nas", &mut records);
        let changed = after.iter().filter(|s| !before.contains(s)).count();
        assert_eq!(changed, 1, "one segment differs");
    }

    #[test]
    fn a_damaged_misnamed_or_foreign_segment_is_refused() {
        let mut records = vec![record("a.flac")];
        let (name, bytes) = segments("nas", &mut records).remove(0);
        assert!(decode("nas", &name, &bytes).is_ok());
        assert!(decode("laptop", &name, &bytes).is_err(), "another origin");
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(decode("nas", &name, &bad).is_err(), "damaged");
        let (other, _) = encode("nas", &[record("b.flac")]);
        assert!(decode("nas", &other, &bytes).is_err(), "misnamed");
    }
}
