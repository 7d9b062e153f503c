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
//!
//! After a scan a mount publishes the whole origin; after a watch's change
//! it publishes again from what it published last ([`Published`]), cutting
//! only the segments the changed paths fall in, so a change costs its
//! segments, not the origin. That gives the segments a whole cut would:
//! a segment ends at a record whose path hashes to a boundary, so a run of
//! segments whose neighbours did not change starts just after a boundary
//! that is still there and ends at one that is still there ([`affected`]
//! marks the segment after each change too: a change at a segment's last
//! record may remove its boundary). A property test holds the two equal.

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

/// A segment as published: the first path it holds, its name, and how many
/// records it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub first: String,
    pub name: String,
    pub records: u64,
}

/// An origin's index as this mount last published it: its segments, in
/// path order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub segments: Vec<Placed>,
}

/// `records` of `origin` as segments, with their bytes.
pub fn segments(origin: &str, records: &mut [FileRecord]) -> Vec<(Placed, Vec<u8>)> {
    cut(origin, records, SEGMENT_EVERY)
}

/// [`segments`], one record in `every` a boundary on average.
fn cut(origin: &str, records: &mut [FileRecord], every: u64) -> Vec<(Placed, Vec<u8>)> {
    records.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = Vec::new();
    let mut start = 0;
    for (i, record) in records.iter().enumerate() {
        if is_boundary(&record.path, every) || i + 1 == records.len() {
            let held = &records[start..=i];
            let (name, bytes) = encode(origin, held);
            let placed = Placed {
                first: held[0].path.clone(),
                name,
                records: held.len() as u64,
            };
            out.push((placed, bytes));
            start = i + 1;
        }
    }
    out
}

/// Whether a segment ends at the record of `path`.
fn is_boundary(path: &str, every: u64) -> bool {
    let hash = blake3::hash(path.as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes")) % every == 0
}

/// The runs of `published`'s segments to cut again after changes at or
/// below each of `changed` (a file, or a folder and all below it): the
/// segment each change falls in, and the one after it. An origin published
/// with no segment has none to cut again: publish it whole.
pub fn affected(published: &Published, changed: &[String]) -> Vec<std::ops::RangeInclusive<usize>> {
    let last = published.segments.len().saturating_sub(1);
    let segment_of = |path: &str| {
        published
            .segments
            .partition_point(|s| s.first.as_str() <= path)
            .saturating_sub(1)
    };
    let mut marked = vec![false; published.segments.len()];
    for path in changed {
        // Everything at or below `path`, and (harmlessly) its siblings that
        // sort between: `a/b`, `a/b.flac`, `a/b/…`.
        let below = format!("{path}/\u{10FFFF}");
        let (from, to) = (segment_of(path), segment_of(&below));
        for mark in &mut marked[from..=(to + 1).min(last)] {
            *mark = true;
        }
    }
    let mut runs = Vec::new();
    let mut i = 0;
    while i < marked.len() {
        if marked[i] {
            let start = i;
            while i + 1 < marked.len() && marked[i + 1] {
                i += 1;
            }
            runs.push(start..=i);
        }
        i += 1;
    }
    runs
}

/// The paths a run of `published`'s segments covers: from its first
/// segment's first path (the origin's start for the first segment), up to
/// the next segment's first path (exclusive; the origin's end for the
/// last).
pub fn bounds(
    published: &Published,
    run: &std::ops::RangeInclusive<usize>,
) -> (Option<String>, Option<String>) {
    let from = (*run.start() > 0).then(|| published.segments[*run.start()].first.clone());
    let to = published
        .segments
        .get(run.end() + 1)
        .map(|s| s.first.clone());
    (from, to)
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

/// Publishes `records` (a complete scan of `origin`) as `mount`'s head:
/// the bytes written, and what was published.
pub async fn publish(
    bucket: &Bucket,
    origin: &str,
    mount: &str,
    scanned: u64,
    mut records: Vec<FileRecord>,
) -> TierResult<(u64, Published)> {
    let cuts = segments(origin, &mut records);
    drop(records);
    let layout = cuts.iter().map(|(placed, _)| placed.clone()).collect();
    write(bucket, origin, mount, scanned, layout, cuts).await
}

/// Publishes `origin` again as `mount`'s head, from `published` with each
/// run of segments replaced by the records now in its bounds ([`bounds`]).
pub async fn republish(
    bucket: &Bucket,
    origin: &str,
    mount: &str,
    scanned: u64,
    published: &Published,
    runs: Vec<(std::ops::RangeInclusive<usize>, Vec<FileRecord>)>,
) -> TierResult<(u64, Published)> {
    let (layout, cuts) = recut(origin, published, runs, SEGMENT_EVERY);
    write(bucket, origin, mount, scanned, layout, cuts).await
}

/// `published` with each run replaced by the segments of its records now:
/// the new layout, and the new segments' bytes.
fn recut(
    origin: &str,
    published: &Published,
    mut runs: Vec<(std::ops::RangeInclusive<usize>, Vec<FileRecord>)>,
    every: u64,
) -> (Vec<Placed>, Vec<(Placed, Vec<u8>)>) {
    runs.sort_by_key(|(run, _)| *run.start());
    let mut layout = Vec::with_capacity(published.segments.len());
    let mut cuts = Vec::new();
    let mut next = 0;
    for (run, mut records) in runs {
        layout.extend_from_slice(&published.segments[next..*run.start()]);
        for (placed, bytes) in cut(origin, &mut records, every) {
            layout.push(placed.clone());
            cuts.push((placed, bytes));
        }
        next = run.end() + 1;
    }
    layout.extend_from_slice(&published.segments[next.min(published.segments.len())..]);
    (layout, cuts)
}

/// A segment of `layout` that is neither in the tier (`held`) nor about to
/// be written (`cuts`).
fn missing_segment<'a>(
    layout: &'a [Placed],
    held: &std::collections::HashSet<String>,
    cuts: &[(Placed, Vec<u8>)],
) -> Option<&'a Placed> {
    layout
        .iter()
        .find(|p| !held.contains(&p.name) && !cuts.iter().any(|(c, _)| c.name == p.name))
}

/// Writes the segments of `cuts` the tier lacks, then `mount`'s head naming
/// `layout`.
async fn write(
    bucket: &Bucket,
    origin: &str,
    mount: &str,
    scanned: u64,
    layout: Vec<Placed>,
    cuts: Vec<(Placed, Vec<u8>)>,
) -> TierResult<(u64, Published)> {
    let folder = origin_folder(origin);
    let held: std::collections::HashSet<String> = bucket
        .list(&format!("{folder}/segments/"))
        .await?
        .into_iter()
        .filter_map(|l| l.key.rsplit('/').next().map(str::to_owned))
        .collect();
    // A head never names a segment that is gone (a tidy takes segments no
    // head names: a mount away long enough finds its old ones taken).
    if let Some(gone) = missing_segment(&layout, &held, &cuts) {
        return Err(TierError::Damaged(format!(
            "segment {} of {origin}, published before, is gone: publish it whole",
            gone.name
        )));
    }
    let mut written = 0;
    for (placed, bytes) in cuts {
        if !held.contains(&placed.name) {
            written += bytes.len() as u64;
            bucket
                .put(&format!("{folder}/segments/{}", placed.name), bytes)
                .await?;
        }
    }
    let head = Head {
        origin: origin.to_owned(),
        mount: mount.to_owned(),
        scanned,
        records: layout.iter().map(|p| p.records).sum(),
        segments: layout.iter().map(|p| p.name.clone()).collect(),
    };
    let bytes = serde_json::to_vec(&head).expect("a head serialises");
    written += bytes.len() as u64;
    bucket
        .put(&format!("{folder}/heads/{mount}"), bytes)
        .await?;
    Ok((written, Published { segments: layout }))
}

/// The newest head of `origin` in the tier, with the bytes read; `None` if
/// there is none.
pub async fn newest_head(bucket: &Bucket, origin: &str) -> TierResult<(Option<Head>, u64)> {
    let (heads, read) = heads_newest_first(bucket, origin).await?;
    Ok((heads.into_iter().next(), read))
}

/// Every head of `origin` in the tier, newest first, with the bytes read.
async fn heads_newest_first(bucket: &Bucket, origin: &str) -> TierResult<(Vec<Head>, u64)> {
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
    heads.sort_by(|a, b| (b.scanned, &b.mount).cmp(&(a.scanned, &a.mount)));
    Ok((heads, read))
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

/// The newest head of `origin` in the tier whose segments can all be read,
/// with its records and the bytes read; `None` if there is none. A head
/// whose segments are missing or damaged is passed over for the one before.
pub async fn newest(
    bucket: &Bucket,
    origin: &str,
) -> TierResult<Option<(Head, Vec<FileRecord>, u64)>> {
    let (heads, read) = heads_newest_first(bucket, origin).await?;
    let mut last_error = None;
    for head in heads {
        match records_of(bucket, &head).await {
            Ok((records, bytes)) => return Ok(Some((head, records, read + bytes))),
            Err(e @ (TierError::NotFound | TierError::Damaged(_))) => {
                tracing::warn!(
                    origin,
                    mount = head.mount,
                    "passed over a head of the tier: {e}"
                );
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    match last_error {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str) -> FileRecord {
        FileRecord::audio("nas", path, 10)
    }

    #[test]
    fn segments_read_back_and_one_change_renames_one_segment() {
        let mut records: Vec<FileRecord> = (0..20_000)
            .map(|i| record(&format!("a/{i:06}.flac")))
            .collect();
        let before = segments("nas", &mut records);
        assert!(before.len() > 1, "{} segments", before.len());
        let mut back = Vec::new();
        for (placed, bytes) in &before {
            back.extend(decode("nas", &placed.name, bytes).unwrap());
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
        let (placed, bytes) = segments("nas", &mut records).remove(0);
        let name = placed.name;
        assert!(decode("nas", &name, &bytes).is_ok());
        assert!(decode("laptop", &name, &bytes).is_err(), "another origin");
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(decode("nas", &name, &bad).is_err(), "damaged");
        let (other, _) = encode("nas", &[record("b.flac")]);
        assert!(decode("nas", &other, &bytes).is_err(), "misnamed");
    }

    /// A mount away long enough that a tidy took its old segments wrote a
    /// head naming them, the newest, which no mount could read (a review
    /// found it): such a head is refused before it is written.
    #[test]
    fn a_head_never_names_a_segment_that_is_gone() {
        let placed = |name: &str| Placed {
            first: name.into(),
            name: name.into(),
            records: 1,
        };
        let layout = [placed("kept"), placed("new"), placed("tidied")];
        let held: std::collections::HashSet<String> = ["kept".to_owned()].into();
        let cuts = vec![(placed("new"), Vec::new())];
        assert_eq!(
            missing_segment(&layout, &held, &cuts).map(|p| p.name.as_str()),
            Some("tidied")
        );
        assert!(missing_segment(&layout[..2], &held, &cuts).is_none());
    }

    /// Segments of some 64 records in the property test: many segments in
    /// a small library (the cut's logic does not depend on the number).
    const EVERY: u64 = 64;

    /// A change applied to a library before it is published again.
    #[derive(Clone, Debug)]
    enum Change {
        Add(String),
        Remove(usize),
        Touch(usize),
        RemoveFolder(usize),
    }

    fn change() -> impl proptest::strategy::Strategy<Value = Change> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-c]{1,2}/[0-9]{1,5}\\.flac".prop_map(Change::Add),
            any::<usize>().prop_map(Change::Remove),
            any::<usize>().prop_map(Change::Touch),
            any::<usize>().prop_map(Change::RemoveFolder),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// Cutting again only the segments the changes fall in gives the
        /// segments a whole cut of the changed library gives.
        #[test]
        fn a_republish_cuts_what_a_whole_publish_would(
            size in 1usize..3_000,
            changes in proptest::collection::vec(change(), 1..12),
        ) {
            let mut library: std::collections::BTreeMap<String, FileRecord> = (0..size)
                .map(|i| {
                    let path = format!("{}/{:05}.flac", ["a", "b", "c/d"][i % 3], i);
                    (path.clone(), record(&path))
                })
                .collect();
            let mut records: Vec<FileRecord> = library.values().cloned().collect();
            let before = Published {
                segments: cut("nas", &mut records, EVERY).into_iter().map(|(p, _)| p).collect(),
            };
            let mut changed = Vec::new();
            for change in changes {
                let paths: Vec<String> = library.keys().cloned().collect();
                let pick = |n: usize| paths.get(n % paths.len().max(1)).cloned();
                match change {
                    Change::Add(path) => {
                        library.insert(path.clone(), record(&path));
                        changed.push(path);
                    }
                    Change::Remove(n) => {
                        if let Some(path) = pick(n) {
                            library.remove(&path);
                            changed.push(path);
                        }
                    }
                    Change::Touch(n) => {
                        if let Some(path) = pick(n) {
                            library.get_mut(&path).unwrap().size += 1;
                            changed.push(path);
                        }
                    }
                    Change::RemoveFolder(n) => {
                        if let Some(path) = pick(n) {
                            let folder = path.rsplit_once('/').unwrap().0.to_owned();
                            library.retain(|p, _| !p.starts_with(&format!("{folder}/")));
                            changed.push(folder);
                        }
                    }
                }
            }
            let runs = affected(&before, &changed)
                .into_iter()
                .map(|run| {
                    let (from, to) = bounds(&before, &run);
                    let held = library
                        .values()
                        .filter(|r| {
                            from.as_ref().is_none_or(|f| &r.path >= f)
                                && to.as_ref().is_none_or(|t| &r.path < t)
                        })
                        .cloned()
                        .collect();
                    (run, held)
                })
                .collect();
            let (layout, _) = recut("nas", &before, runs, EVERY);
            let mut all: Vec<FileRecord> = library.values().cloned().collect();
            let whole: Vec<Placed> = cut("nas", &mut all, EVERY).into_iter().map(|(p, _)| p).collect();
            proptest::prop_assert_eq!(layout, whole);
        }
    }
}
