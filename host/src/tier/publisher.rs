//! What a mount publishes: after a stream from an origin ends, the version
//! it fetched is offered (`crate::cache::shared::SharedTier::offer`); here,
//! in one task, the chunks of it that the tier lacks are packed and written,
//! then the version's manifest, merged with what the tier held of it before.
//! A manifest is written after the packs it names, so one that is found
//! names packs that were written. A version the tier has no manifest of
//! (a file retagged at its origin) is placed, where it can be, in the packs
//! of the file's newest other version in the tier (whose packs are checked
//! to be there still): only the chunks it does not share are uploaded.
//!
//! Nothing here is in a reader's way: offers wait in a bounded queue (and
//! are dropped, counted, when it is full), chunk bytes are read from the
//! local store on a blocking thread, and a failed write only means the tier
//! lacks what it would have had. A failed write pauses writing (see
//! [`super::health`]): a full tier holds writes open, and until the pause
//! ends the offers are dropped, counted, not queued behind it. Two mounts that publish one version at
//! once each write a manifest of what they hold; the last one wins, and
//! what it lacks is a miss for the others, who read it from the origin and
//! offer it again.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::bucket::{Bucket, TierError};
use super::health::TierHealth;
use super::manifest::{file_folder, manifest_key, pack_key, PackName, Place, TierManifest};
use super::pack::PackBuilder;
use super::{remember, Known, TierFigures};
use crate::cache::chunker::ChunkId;
use crate::cache::content_cache::ContentCache;
use crate::cache::manifest::FileVersion;
use crate::cache::shared::{SharedChunk, SharedChunks};

/// Publishes the versions offered on `offers` until every sender is gone.
/// `probe` (a small object, removed again) is written first: a store that
/// refuses it (read-only keys) makes this mount a pure reader. A refusal of
/// a large write is not always seen as one (the store may close the
/// connection before the body is sent), so the small write decides.
pub(super) async fn run(
    bucket: Arc<Bucket>,
    cache: Arc<ContentCache>,
    figures: Arc<TierFigures>,
    mut offers: mpsc::Receiver<FileVersion>,
    probe: (String, Vec<u8>),
    known: Arc<Mutex<HashMap<String, Known>>>,
) {
    let mut registered = false;
    let mut writes = TierHealth::for_writes();
    // A failed write: writes pause, and the first pause of a run is said.
    let failed = |writes: &mut TierHealth, what: &str, e: &TierError| {
        figures.failures.fetch_add(1, Ordering::Relaxed);
        let quiet = writes.first_failure_next();
        let pause = writes.failed();
        if quiet {
            tracing::info!("cannot {what}: {e}; writes to the tier pause for {pause:?}");
        } else {
            tracing::debug!("cannot {what}: {e}; writes to the tier pause for {pause:?}");
        }
    };
    while let Some(first) = offers.recv().await {
        // A version offered again while it waited is published once.
        let mut batch = vec![first];
        while let Ok(more) = offers.try_recv() {
            if !batch.contains(&more) {
                batch.push(more);
            }
        }
        if !writes.usable() {
            figures
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            continue;
        }
        if !registered {
            match bucket.put(&probe.0, probe.1.clone()).await {
                Ok(()) => {
                    registered = true;
                    let _ = bucket.delete(&probe.0).await;
                }
                Err(TierError::Refused(why)) => return figures.writes_refused(&why),
                Err(e) => {
                    failed(&mut writes, "register with the tier", &e);
                    figures
                        .dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let mut rest = batch.into_iter();
        for version in rest.by_ref() {
            match publish(&bucket, &cache, &figures, &version).await {
                // This mount knows what it published (a pin names its packs).
                Ok(Some(manifest)) => {
                    writes.succeeded();
                    remember(&known, &version.key(), Known::Held(Arc::new(manifest)))
                }
                Ok(None) => {}
                Err(TierError::Refused(why)) => return figures.writes_refused(&why),
                Err(e) => {
                    failed(&mut writes, &format!("publish {}", version.path), &e);
                    break;
                }
            }
        }
        figures
            .dropped
            .fetch_add(rest.len() as u64, Ordering::Relaxed);
    }
}

/// Writes what the cache holds of `version` that the tier lacks, then its
/// manifest, and returns that manifest (`None` if it wrote nothing).
pub async fn publish(
    bucket: &Bucket,
    cache: &Arc<ContentCache>,
    figures: &TierFigures,
    version: &FileVersion,
) -> Result<Option<TierManifest>, TierError> {
    let key = version.key();
    let cover = cache.cover_of(version);
    if cover.is_empty() {
        return Ok(None);
    }
    let before = match bucket.get(&manifest_key(version)).await {
        Ok(bytes) => TierManifest::decode(&bytes, &key).ok(),
        Err(TierError::NotFound) => None,
        Err(e) => return Err(e),
    };
    let mut placed: HashMap<ChunkId, (PackName, u64)> = HashMap::new();
    let mut held: Vec<SharedChunk> = Vec::new();
    if let Some(before) = &before {
        for (chunk, place) in before.chunks.chunks().iter().zip(&before.places) {
            placed.insert(chunk.id, (before.packs[place.pack as usize], place.at));
            held.push(*chunk);
        }
    } else {
        placed = shared_with_other_version(bucket, version).await;
    }
    let lacking: Vec<SharedChunk> = cover
        .iter()
        .filter(|c| !placed.contains_key(&c.id))
        .copied()
        .collect();
    // Nothing to add to a manifest the tier has. A version the tier has no
    // manifest of, every chunk placed in another version's packs (a file
    // touched, or copied back unchanged), still gets its own.
    if lacking.is_empty() && before.is_some() {
        return Ok(before);
    }
    let mut pack = PackBuilder::default();
    for chunk in &lacking {
        let (cache, id) = (cache.clone(), chunk.id);
        let bytes = tokio::task::spawn_blocking(move || cache.chunk(&id))
            .await
            .ok()
            .flatten();
        // Evicted since: the tier goes without it.
        let Some(bytes) = bytes else { continue };
        pack.add(chunk.id, &bytes);
        if pack.full() {
            write_pack(bucket, figures, std::mem::take(&mut pack), &mut placed).await?;
        }
    }
    if !pack.is_empty() {
        write_pack(bucket, figures, pack, &mut placed).await?;
    }
    // What the tier held and what this mount adds, as one cover.
    held.extend(cover.iter().filter(|c| placed.contains_key(&c.id)));
    held.sort_by_key(|c| (c.offset, std::cmp::Reverse(c.len)));
    let mut manifest = TierManifest::default();
    let mut chunks = Vec::new();
    let mut packs: HashMap<PackName, u32> = HashMap::new();
    let mut reach = 0u64;
    for chunk in held {
        if chunk.offset < reach {
            continue;
        }
        let (name, at) = placed[&chunk.id];
        let next = packs.len() as u32;
        let pack = *packs.entry(name).or_insert_with(|| {
            manifest.packs.push(name);
            next
        });
        manifest.places.push(Place { pack, at });
        chunks.push(chunk);
        reach = chunk.offset + chunk.len as u64;
    }
    manifest.chunks = Arc::new(SharedChunks::new(chunks).expect("a cover does not overlap"));
    let bytes = manifest.encode(&key);
    let len = bytes.len() as u64;
    bucket.put(&manifest_key(version), bytes).await?;
    figures.writes.fetch_add(1, Ordering::Relaxed);
    figures.manifests_written.fetch_add(1, Ordering::Relaxed);
    figures.bytes_written.fetch_add(len, Ordering::Relaxed);
    Ok(Some(manifest))
}

/// Where the tier holds the chunks of the newest other version of
/// `version`'s file whose packs are all still there: nothing if there is
/// none, or the tier cannot say (the version is then uploaded whole).
async fn shared_with_other_version(
    bucket: &Bucket,
    version: &FileVersion,
) -> HashMap<ChunkId, (PackName, u64)> {
    let own = manifest_key(version);
    let mut others = match bucket.list(&format!("{}/", file_folder(version))).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::debug!(
                path = version.path,
                "cannot list the file's other versions: {e}"
            );
            return HashMap::new();
        }
    };
    others.retain(|l| l.key != own);
    others.sort_by_key(|l| std::cmp::Reverse(l.modified));
    for other in others.iter().take(2) {
        let Ok(bytes) = bucket.get(&other.key).await else {
            continue;
        };
        let Ok(manifest) = TierManifest::decode_any_version(&bytes) else {
            continue;
        };
        let mut all_there = true;
        for pack in &manifest.packs {
            if !matches!(bucket.exists(&pack_key(pack)).await, Ok(true)) {
                all_there = false;
                break;
            }
        }
        if !all_there {
            continue;
        }
        return manifest
            .chunks
            .chunks()
            .iter()
            .zip(&manifest.places)
            .map(|(chunk, place)| (chunk.id, (manifest.packs[place.pack as usize], place.at)))
            .collect();
    }
    HashMap::new()
}

async fn write_pack(
    bucket: &Bucket,
    figures: &TierFigures,
    pack: PackBuilder,
    placed: &mut HashMap<ChunkId, (PackName, u64)>,
) -> Result<(), TierError> {
    let (name, bytes, chunks) = pack.finish();
    let len = bytes.len() as u64;
    bucket.put(&pack_key(&name), bytes).await?;
    figures.writes.fetch_add(1, Ordering::Relaxed);
    figures.bytes_written.fetch_add(len, Ordering::Relaxed);
    for (id, at) in chunks {
        placed.insert(id, (name, at));
    }
    Ok(())
}
