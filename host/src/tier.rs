//! The shared tier: what one mount learned, kept in an S3 bucket for every
//! other mount of the same library.
//!
//! A household or a station mounts the same origins several times. Without
//! the tier each mount scans every origin, downloads every track it plays and
//! keeps its own cache. With it, a mount reads **local cache → tier →
//! origin**, and what it fetched from an origin it publishes to the tier in
//! the background. The tier is an ordinary S3-compatible bucket on an engine
//! that is already distributed (tested on Garage, three nodes, replication
//! factor 3): MusicFS runs no server of its own, as JuiceFS keeps its chunks
//! in an object store and mountpoint-s3 shares its block cache in a bucket.
//!
//! # What is in the bucket
//!
//! Everything lives under the configured prefix. Packs and segments are
//! immutable and named by their BLAKE3, so two mounts that publish the same
//! thing write the same bytes under the same name. A manifest is rewritten
//! only whole, by the mount that publishes more of its version. A mount's
//! own head, session and leases are written only by that mount:
//!
//! - `packs/<blake3 of the object>`: chunks, about 8 MiB of them in one
//!   object (an object per 64 KiB chunk would cost a request per chunk on
//!   every side). Each record is the local pack's: the chunk's name, its
//!   length, its bytes. A reader fetches runs of neighbours with ranged GETs
//!   and checks each chunk against its name; a chunk that fails is never
//!   served (the read goes on to the origin) and is counted.
//! - `manifests/<blake3 of the version's key>`: one file version's chunks in
//!   order, each with the pack and the offset that hold it. A manifest is
//!   written after the packs it names; one that names a pack swept since is
//!   a miss, and the mount that meets it removes it. For a 40 MB track it is
//!   about 35 KB: a retag at the origin costs every other mount this
//!   manifest and the chunks it lacks, not the file.
//! - `index/<origin>/segments/<blake3>`: the library's records (source,
//!   version, tags) as one mount's scan of that origin found them.
//! - `index/<origin>/heads/<mount id>`: each mount's list of the segments of
//!   its last whole scan of that origin, and when it finished. A reader
//!   takes the newest (by the clock of the mount that wrote it).
//! - `sessions/<mount id>`: renewed while the mount runs; it names the packs
//!   the mount read lately and those of the files it pins ([`gc`]).
//! - `leases/scan/<origin>/<mount id>`: a mount scanning an origin ([`lease`]).
//!
//! A mount's id is kept in its cache folder, so a restart replaces its head,
//! session and leases rather than leaving others beside them.
//!
//! # Without conditional writes
//!
//! Garage, the store this is tested on, has no conditional writes (a PUT with
//! `If-None-Match` or `If-Match` is accepted and overwrites): it has no
//! consensus by design. So nothing here needs one:
//!
//! - A head is written only by its mount: there is no shared head to race
//!   for. A reader takes the newest head of an origin.
//! - Objects named by their content can be written twice, by two mounts,
//!   with no harm. Two mounts that publish one version's manifest at once
//!   each write what they hold; the last one wins, and what it lacks is a
//!   miss for the others, who fetch it from the origin and offer it again.
//! - A scan lease is advisory. A mount writes its lease, then lists the
//!   leases of that origin, and scans only if its own is the oldest live one
//!   (by the millisecond it asked). Garage reads its own writes (quorum 2 of
//!   3), so of two mounts that start together at least one sees the other;
//!   both may scan only if their clocks order them each its own way. A
//!   double scan costs work, never records.
//!
//! # The library index
//!
//! After a scan reaches the whole of an origin, the mount publishes that
//! origin's records ([`library`]). A mount whose own index holds nothing of
//! an origin takes the newest index of it from the tier at start and shows
//! it before calling the origin; its scan then lists and finds every file as
//! the index has it, reading tags only where something changed. An index in
//! the tier never replaces records a mount holds. When several mounts start
//! with nothing to go on, a [`lease`] says which one scans.
//!
//! # Never in a reader's way
//!
//! The tier is a replica like any other to the read path: same deadlines,
//! same failover. A tier that is down, slow or full makes a read go on to the
//! origin; publishing runs in the background with a bounded queue that drops
//! (and counts) what it cannot take, never holding a reader or the ingest
//! pipeline. A mount with read-only credentials only reads.
//!
//! # Keys
//!
//! A version is found in the tier by its key: the origin's id, the path, the
//! size, the mtime and the origin's version token. Mounts that share a tier
//! give each origin the same id (the same `[[origins]]` tables), as they
//! would to share anything else.
//!
//! # Parts
//!
//! - [`bucket`]: the S3 calls, each under the tier's deadline.
//! - [`manifest`] and [`pack`]: the objects' formats.
//! - [`health`]: when to ask the tier, after it failed.
//! - [`library`]: the library index: segments and heads.
//! - [`lease`]: who scans an origin when several mounts start together.
//! - [`gc`]: sessions, and the size limit kept across mounts.
//! - [`publisher`]: what a mount publishes, in the background.
//! - This file: the tier as the cache sees it (`crate::cache::shared`).

pub mod bucket;
pub mod gc;
pub mod health;
pub mod lease;
pub mod library;
pub mod manifest;
pub mod pack;
pub mod publisher;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use self::bucket::{Bucket, TierError};
use self::health::TierHealth;
use self::manifest::{manifest_key, pack_key, TierManifest};
use crate::cache::content_cache::ContentCache;
use crate::cache::manifest::FileVersion;
use crate::cache::shared::{Boxed, SharedChunks, SharedTier};
use crate::config::tier::TierConfig;
use crate::library::index::FileRecord;

/// How long a version the tier does not hold is not asked about again.
pub const ABSENT_FOR: Duration = Duration::from_secs(10);
/// Versions waiting to be published; past this, offers are dropped.
const OFFERS: usize = 256;

/// What the tier did, for `musicfs status` and the metrics.
#[derive(Debug, Default)]
pub struct TierFigures {
    /// Manifests read (found or not).
    pub manifest_reads: AtomicU64,
    /// Ranged reads of packs.
    pub pack_reads: AtomicU64,
    /// Bytes read from the tier: manifests and chunks.
    pub bytes_read: AtomicU64,
    /// Objects written (packs and manifests).
    pub writes: AtomicU64,
    /// Of those, manifests: versions published.
    pub manifests_written: AtomicU64,
    /// Bytes written.
    pub bytes_written: AtomicU64,
    /// Objects refused: damaged, foreign or cut short.
    pub refused: AtomicU64,
    /// Calls that failed or ran out their deadline.
    pub failures: AtomicU64,
    /// Offers dropped because the publisher was behind (or stopped).
    pub dropped: AtomicU64,
    /// Origin indexes published.
    pub indexes_written: AtomicU64,
    /// Origin indexes taken from the tier instead of a scan.
    pub indexes_read: AtomicU64,
    /// Bytes of packs this mount swept from the tier.
    pub swept_bytes: AtomicU64,
    /// Objects this mount deleted tidying the tier.
    pub tidied_objects: AtomicU64,
    /// The tier refused this mount's writes: it only reads.
    pub read_only: AtomicBool,
}

impl TierFigures {
    /// The tier refused this mount's writes (read-only keys): from now on
    /// it only reads.
    fn writes_refused(&self, why: &str) {
        if !self.read_only.swap(true, Ordering::Relaxed) {
            tracing::info!("the tier refuses this mount's writes ({why}); reading only");
        }
    }
}

/// What the tier knows of a version, as last looked up.
#[derive(Clone)]
enum Known {
    Held(Arc<TierManifest>),
    Absent(Instant),
}

/// The shared tier of one mount.
pub struct Tier {
    bucket: Arc<Bucket>,
    health: Mutex<TierHealth>,
    known: Arc<Mutex<HashMap<String, Known>>>,
    offers: Option<mpsc::Sender<FileVersion>>,
    /// What it did.
    pub figures: Arc<TierFigures>,
    /// Where it is, for `musicfs status` (no secret).
    pub shown: String,
    /// This mount's name in the tier.
    pub mount_id: String,
    lease_for: Duration,
    /// Scan leases this mount holds, each renewed by a task until released.
    held: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Packs read lately, and when (the newest [`TOUCHED_KEPT`]).
    touched: Mutex<HashMap<String, u64>>,
    /// The packs of each pinned version, by its key, as last found.
    pinned_packs: Mutex<HashMap<String, Vec<String>>>,
    config: TierConfig,
}

/// How many recently read packs a session names.
const TOUCHED_KEPT: usize = 4096;

/// The most bytes one ranged GET of a pack asks for.
const GET_SPAN: u64 = 2 << 20;

/// How often a mount renews its session.
pub const SESSION_RENEW: Duration = Duration::from_secs(20);
/// How long a session holds without being renewed.
pub const SESSION_LIFE: Duration = Duration::from_secs(90);

impl Tier {
    /// Opens the tier `config` names for `cache`; publishing (unless the
    /// config says not to) runs on `runtime` for as long as the mount runs.
    pub fn open(
        config: &TierConfig,
        mount_id: String,
        cache: &Arc<ContentCache>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Arc<Tier>, String> {
        let bucket = Arc::new(Bucket::open(config)?);
        let figures = Arc::new(TierFigures::default());
        let known: Arc<Mutex<HashMap<String, Known>>> = Arc::default();
        let offers = config.publish.then(|| {
            let (send, receive) = mpsc::channel(OFFERS);
            // A small write, removed again, says whether this mount may write.
            let session = (format!("probes/{mount_id}"), mount_id.clone().into_bytes());
            runtime.spawn(publisher::run(
                bucket.clone(),
                cache.clone(),
                figures.clone(),
                receive,
                session,
                known.clone(),
            ));
            send
        });
        Ok(Arc::new(Tier {
            bucket,
            health: Mutex::default(),
            known,
            offers,
            figures,
            mount_id,
            lease_for: config.lease(),
            held: Mutex::default(),
            touched: Mutex::default(),
            pinned_packs: Mutex::default(),
            config: config.clone(),
            shown: format!(
                "{}/{}/{}",
                config.endpoint.trim_end_matches('/'),
                config.bucket,
                config.prefix
            ),
        }))
    }

    /// Whether this mount publishes to the tier.
    pub fn publishes(&self) -> bool {
        self.offers.is_some() && !self.figures.read_only.load(Ordering::Relaxed)
    }

    /// Whether the tier is asked now (not paused after failing).
    pub fn usable(&self) -> bool {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .usable()
    }

    /// Notes how a call went.
    fn noted<T>(&self, result: &Result<T, TierError>) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) | Err(TierError::NotFound) => health.succeeded(),
            // Read-only keys asked to write: reads go on.
            Err(TierError::Refused(why)) if self.offers.is_some() => {
                self.figures.writes_refused(why)
            }
            Err(TierError::Damaged(why)) => {
                self.figures.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("refused an object of the tier: {why}");
            }
            Err(e) => {
                self.figures.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("tier call failed: {e}");
                health.failed();
            }
        }
    }

    /// The manifest of `version` in the tier, looked up at most every
    /// [`ABSENT_FOR`] when it is not there.
    async fn manifest(&self, version: &FileVersion) -> Option<Arc<TierManifest>> {
        let key = version.key();
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        match known {
            Some(Known::Held(manifest)) => return Some(manifest),
            Some(Known::Absent(at)) if at.elapsed() < ABSENT_FOR => return None,
            _ => {}
        }
        if !self.usable() {
            return None;
        }
        self.figures.manifest_reads.fetch_add(1, Ordering::Relaxed);
        let got = self.bucket.get(&manifest_key(version)).await;
        if let Ok(bytes) = &got {
            self.figures
                .bytes_read
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        let decoded = got.and_then(|bytes| {
            TierManifest::decode(&bytes, &key)
                .map_err(|why| TierError::Damaged(format!("manifest of {}: {why}", version.path)))
        });
        self.noted(&decoded);
        match decoded {
            Ok(manifest) => {
                let manifest = Arc::new(manifest);
                self.remember(&key, Known::Held(manifest.clone()));
                Some(manifest)
            }
            // Not over a manifest this mount's publisher noted while the GET
            // was out: that one is newer than this answer. (It was
            // overwritten once, and a pinned version's packs then went
            // missing from the session until the absence ran out, long
            // enough for a sweep to take them.)
            Err(_) => remember_absent(&self.known, &key),
        }
    }

    fn remember(&self, key: &str, known: Known) {
        remember(&self.known, key, known);
    }

    /// Fetches chunks `range` of `manifest`, neighbours in one pack with one
    /// ranged GET each.
    async fn fetch_chunks(
        &self,
        manifest: &TierManifest,
        range: Range<usize>,
    ) -> Result<Vec<Vec<u8>>, TierError> {
        let chunks = &manifest.chunks.chunks()[range.clone()];
        let places = &manifest.places[range];
        // Neighbours in one pack, up to GET_SPAN bytes, are one ranged GET;
        // the GETs of a run go at once (a GET's round trip, not the link,
        // set the pace one at a time).
        let mut groups: Vec<Range<usize>> = Vec::new();
        let mut i = 0;
        while i < chunks.len() {
            let mut j = i + 1;
            let mut bytes = chunks[i].len as u64;
            while j < chunks.len()
                && places[j].pack == places[i].pack
                && pack::follows((places[j - 1].at, chunks[j - 1].len), places[j].at)
                && bytes + (chunks[j].len as u64) <= GET_SPAN
            {
                bytes += chunks[j].len as u64;
                j += 1;
            }
            groups.push(i..j);
            i = j;
        }
        let gets = groups.into_iter().map(|group| async move {
            let first = group.start;
            let wanted: Vec<_> = group
                .map(|k| (chunks[k].id, places[k].at, chunks[k].len))
                .collect();
            let span = pack::span_of(
                &wanted
                    .iter()
                    .map(|&(_, at, len)| (at, len))
                    .collect::<Vec<_>>(),
            );
            let key = pack_key(&manifest.packs[places[first].pack as usize]);
            self.figures.pack_reads.fetch_add(1, Ordering::Relaxed);
            self.touched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key["packs/".len()..].to_owned(), unix_now());
            let fetched = self.bucket.get_range(&key, span.clone()).await?;
            let cut = pack::cut_out(&fetched, span.start, &wanted)
                .map_err(|why| TierError::Damaged(format!("{key}: {why}")))?;
            self.figures
                .bytes_read
                .fetch_add(fetched.len() as u64, Ordering::Relaxed);
            Ok::<_, TierError>(cut)
        });
        let mut out = Vec::with_capacity(chunks.len());
        for cut in futures_util::future::join_all(gets).await {
            out.extend(cut?);
        }
        Ok(out)
    }
}

impl Tier {
    /// Publishes `records`, a complete scan of `origin`, as this mount's
    /// head for it (unless this mount only reads); what it published.
    pub async fn publish_index(
        &self,
        origin: &str,
        records: Vec<FileRecord>,
    ) -> Option<library::Published> {
        if !self.publishes() {
            return None;
        }
        let done =
            library::publish(&self.bucket, origin, &self.mount_id, unix_now(), records).await;
        self.index_published(origin, done)
    }

    /// Publishes `origin` again from `published`, each run of its segments
    /// cut again from the records now in its bounds ([`library::bounds`]):
    /// a watch's change costs its segments, not the origin.
    pub async fn republish_index(
        &self,
        origin: &str,
        published: &library::Published,
        runs: Vec<(std::ops::RangeInclusive<usize>, Vec<FileRecord>)>,
    ) -> Option<library::Published> {
        if !self.publishes() {
            return None;
        }
        let done = library::republish(
            &self.bucket,
            origin,
            &self.mount_id,
            unix_now(),
            published,
            runs,
        )
        .await;
        self.index_published(origin, done)
    }

    fn index_published(
        &self,
        origin: &str,
        done: Result<(u64, library::Published), TierError>,
    ) -> Option<library::Published> {
        match done {
            Ok((bytes, published)) => {
                self.figures.writes.fetch_add(1, Ordering::Relaxed);
                self.figures
                    .bytes_written
                    .fetch_add(bytes, Ordering::Relaxed);
                self.figures.indexes_written.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(origin, bytes, "published the origin's index to the tier");
                Some(published)
            }
            Err(e) => {
                self.figures.failures.fetch_add(1, Ordering::Relaxed);
                tracing::info!(origin, "cannot publish the origin's index to the tier: {e}");
                None
            }
        }
    }

    /// The newest head of `origin`'s index in the tier, if the tier says.
    pub async fn newest_index_head(&self, origin: &str) -> Option<library::Head> {
        let found = library::newest_head(&self.bucket, origin).await;
        self.noted(&found);
        match found {
            Ok((head, bytes)) => {
                self.figures.bytes_read.fetch_add(bytes, Ordering::Relaxed);
                head
            }
            Err(e) => {
                tracing::debug!(origin, "cannot read the origin's index heads: {e}");
                None
            }
        }
    }

    /// The records `head` lists, if all of them can be read.
    pub async fn index_records(&self, head: &library::Head) -> Option<Vec<FileRecord>> {
        let found = library::records_of(&self.bucket, head).await;
        self.noted(&found);
        match found {
            Ok((records, bytes)) => {
                self.figures.bytes_read.fetch_add(bytes, Ordering::Relaxed);
                Some(records)
            }
            Err(e) => {
                tracing::info!(
                    origin = head.origin,
                    "cannot read the origin's index from the tier: {e}"
                );
                None
            }
        }
    }

    /// The newest index of `origin` in the tier, if there is one it can use.
    pub async fn newest_index(&self, origin: &str) -> Option<(library::Head, Vec<FileRecord>)> {
        let found = library::newest(&self.bucket, origin).await;
        self.noted(&found);
        match found {
            Ok(Some((head, records, bytes))) => {
                self.figures.bytes_read.fetch_add(bytes, Ordering::Relaxed);
                Some((head, records))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::info!(origin, "cannot read the origin's index from the tier: {e}");
                None
            }
        }
    }
}

impl Tier {
    /// Asks for the lease on a first scan of `origin` (see [`lease`]);
    /// `None` if the tier cannot say (this mount then scans). A lease taken
    /// is renewed until [`Tier::release_scan`].
    pub async fn ask_scan(self: &Arc<Self>, origin: &str) -> Option<lease::Asked> {
        if !self.publishes() {
            return None;
        }
        let taken = unix_millis();
        let asked = lease::ask(
            &self.bucket,
            origin,
            &self.mount_id,
            unix_now(),
            taken,
            self.lease_for,
        )
        .await;
        self.noted(&asked);
        let asked = asked.ok()?;
        if asked == lease::Asked::Taken {
            let (tier, origin_id) = (self.clone(), origin.to_owned());
            let renew = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(tier.lease_for / 3).await;
                    let renewed = lease::write(
                        &tier.bucket,
                        &origin_id,
                        &tier.mount_id,
                        taken,
                        unix_now(),
                        tier.lease_for,
                    )
                    .await;
                    if let Err(e) = renewed {
                        tracing::debug!(origin = origin_id, "cannot renew the scan lease: {e}");
                    }
                }
            });
            if let Some(old) = self
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(origin.to_owned(), renew)
            {
                old.abort();
            }
            tracing::info!(origin, "scan lease taken");
        }
        Some(asked)
    }

    /// Gives the scan lease on `origin` back, if this mount holds it.
    pub async fn release_scan(&self, origin: &str) {
        let renew = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(origin);
        if let Some(renew) = renew {
            renew.abort();
            if let Err(e) = lease::release(&self.bucket, origin, &self.mount_id).await {
                tracing::debug!(origin, "cannot give the scan lease back: {e}");
            }
        }
    }

    /// Gives back the scan leases of origins a scan did not cover (their
    /// plugin never came up, say): the others must not wait on them.
    pub async fn release_unscanned(&self, scanned: &[String]) {
        let held: Vec<String> = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|origin| !scanned.contains(origin))
            .cloned()
            .collect();
        for origin in held {
            self.release_scan(&origin).await;
        }
    }

    /// How long a lease holds unless renewed.
    pub fn lease_for(&self) -> Duration {
        self.lease_for
    }

    /// Whether another mount holds a live lease on scanning `origin`;
    /// `None` if the tier cannot say.
    pub async fn scan_held_elsewhere(&self, origin: &str) -> Option<bool> {
        let live = lease::live(&self.bucket, origin, unix_now()).await;
        self.noted(&live);
        Some(live.ok()?.iter().any(|l| l.mount != self.mount_id))
    }
}

impl Tier {
    /// Keeps this mount's session while it runs (renewed every
    /// [`SESSION_RENEW`], holding [`SESSION_LIFE`]): the packs it read
    /// lately, and the packs of `pinned()`, the versions it pins. And, every
    /// `sweep_every_secs`, one mount at a time, sweeps the tier down to its
    /// limit and tidies it ([`gc`]). Only a mount that publishes does either.
    pub fn keep_session(
        self: &Arc<Self>,
        pinned: impl Fn() -> Vec<FileVersion> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let tier = self.clone();
        tokio::spawn(async move {
            let sweep_every = Duration::from_secs(tier.config.sweep_every_secs.max(1));
            let mut last_sweep = Instant::now();
            loop {
                if !tier.publishes() {
                    return;
                }
                tier.renew_session(&pinned()).await;
                if last_sweep.elapsed() >= sweep_every {
                    last_sweep = Instant::now();
                    tier.sweep().await;
                }
                tokio::time::sleep(SESSION_RENEW.min(sweep_every)).await;
            }
        })
    }

    async fn renew_session(&self, pinned: &[FileVersion]) {
        // Each pinned version's packs, as last found: a lookup that fails
        // now (the tier paused, say) keeps what was found before, so a pin
        // never drops out of the session for a failed call.
        let keys: Vec<String> = pinned.iter().map(FileVersion::key).collect();
        for (version, key) in pinned.iter().zip(&keys) {
            if let Some(manifest) = self.manifest(version).await {
                let packs = manifest
                    .packs
                    .iter()
                    .map(|p| pack_key(p)["packs/".len()..].to_owned())
                    .collect();
                self.pinned_packs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), packs);
            }
        }
        let packs: std::collections::BTreeSet<String> = {
            let mut map = self.pinned_packs.lock().unwrap_or_else(|p| p.into_inner());
            // Unpinned versions go.
            let wanted: std::collections::HashSet<&String> = keys.iter().collect();
            map.retain(|key, _| wanted.contains(key));
            map.values().flatten().cloned().collect()
        };
        // The packs read lately, the newest kept across renewals.
        let touched: Vec<(String, u64)> = {
            let mut map = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > TOUCHED_KEPT {
                let mut by_age: Vec<(String, u64)> = map.drain().collect();
                by_age.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
                by_age.truncate(TOUCHED_KEPT);
                map.extend(by_age);
            }
            map.iter().map(|(p, at)| (p.clone(), *at)).collect()
        };
        let session = gc::Session {
            mount: self.mount_id.clone(),
            until: unix_now() + SESSION_LIFE.as_secs(),
            touched,
            pinned: packs.into_iter().collect(),
        };
        let bytes = serde_json::to_vec(&session).expect("a session serialises");
        let written = self
            .bucket
            .put(&format!("sessions/{}", self.mount_id), bytes)
            .await;
        match written {
            Err(TierError::Refused(why)) => self.figures.writes_refused(&why),
            Err(e) => tracing::debug!("cannot renew the session in the tier: {e}"),
            Ok(()) => {}
        }
    }

    /// Sweeps the tier to its limit (if it has one) and tidies it, if no
    /// other mount is doing so: see [`gc`].
    async fn sweep(&self) {
        let now = unix_now();
        let taken = unix_millis();
        match lease::ask(
            &self.bucket,
            gc::SWEEP_LEASE,
            &self.mount_id,
            now,
            taken,
            self.lease_for,
        )
        .await
        {
            Ok(lease::Asked::Taken) => {}
            Ok(lease::Asked::HeldBy(_)) => return,
            Err(e) => {
                tracing::debug!("cannot ask for the sweep lease: {e}");
                return;
            }
        }
        let holding = gc::Holding {
            mount: &self.mount_id,
            taken,
            ttl: self.lease_for,
        };
        let grace = Duration::from_secs(self.config.grace_secs);
        let done = async {
            let sessions = gc::read_sessions(&self.bucket).await?;
            if self.config.size_limit_gb > 0.0 {
                let limit = (self.config.size_limit_gb * 1e9) as u64;
                let swept = gc::sweep(&self.bucket, &sessions, limit, grace, now, &holding).await?;
                if swept.packs > 0 {
                    self.figures
                        .swept_bytes
                        .fetch_add(swept.bytes, Ordering::Relaxed);
                    tracing::info!(
                        before = swept.before,
                        packs = swept.packs,
                        bytes = swept.bytes,
                        "swept the tier down to its limit"
                    );
                }
            }
            let tidied = gc::tidy(&self.bucket, &sessions, grace, now, &holding).await?;
            self.figures
                .tidied_objects
                .fetch_add(tidied.objects(), Ordering::Relaxed);
            if tidied.objects() > 0 {
                tracing::debug!(?tidied, "tidied the tier");
            }
            Ok::<_, TierError>(())
        };
        if let Err(e) = done.await {
            tracing::info!("cannot sweep or tidy the tier: {e}");
        }
        let _ = lease::release(&self.bucket, gc::SWEEP_LEASE, &self.mount_id).await;
    }
}

/// Notes what the tier holds of the version whose key is `key`.
fn remember(map: &Mutex<HashMap<String, Known>>, key: &str, known: Known) {
    note(
        &mut map.lock().unwrap_or_else(|p| p.into_inner()),
        key,
        known,
    );
}

/// Notes `known` of `key` in the locked `map`, which stays bounded: a mount
/// plays a few thousand versions a day at most.
fn note(map: &mut HashMap<String, Known>, key: &str, known: Known) {
    if map.len() >= 4096 {
        map.clear();
    }
    map.insert(key.to_owned(), known);
}

/// Notes that the tier lacks the version whose key is `key`, unless a
/// manifest of it is noted already (the publisher's, newer than the answer
/// that found none): that one is returned.
fn remember_absent(map: &Mutex<HashMap<String, Known>>, key: &str) -> Option<Arc<TierManifest>> {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(Known::Held(manifest)) = map.get(key) {
        return Some(manifest.clone());
    }
    note(&mut map, key, Known::Absent(Instant::now()));
    None
}

/// This mount's name in the tier, kept in `cache_dir` so that a restart is
/// the same mount (its head and session replaced, not left beside new ones).
pub fn mount_id(cache_dir: &std::path::Path) -> String {
    let file = cache_dir.join("tier-mount-id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        let id = id.trim();
        if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return id.to_owned();
        }
    }
    let id = new_mount_id();
    if let Err(e) = std::fs::write(&file, &id) {
        tracing::warn!("cannot keep this mount's name in the tier: {e}");
    }
    id
}

/// A name for a mount in the tier, unique among mounts: its host, the
/// process and the time, hashed.
fn new_mount_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let seed = format!(
        "{}\0{}\0{:?}",
        host.trim(),
        std::process::id(),
        std::time::SystemTime::now()
    );
    blake3::hash(seed.as_bytes()).to_hex()[..16].to_owned()
}

/// Milliseconds since the epoch.
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SharedTier for Tier {
    fn chunks_of<'a>(&'a self, version: &'a FileVersion) -> Boxed<'a, Option<Arc<SharedChunks>>> {
        Box::pin(async move {
            let manifest = self.manifest(version).await?;
            Some(manifest.chunks.clone())
        })
    }

    fn fetch<'a>(
        &'a self,
        version: &'a FileVersion,
        of: &'a SharedChunks,
        range: Range<usize>,
    ) -> Boxed<'a, Result<Vec<Vec<u8>>, String>> {
        Box::pin(async move {
            if !self.usable() {
                return Err("the tier is paused after failing".into());
            }
            let manifest = self
                .manifest(version)
                .await
                .filter(|m| std::ptr::eq(&*m.chunks, of) || *m.chunks == *of)
                .ok_or("the tier's manifest changed")?;
            let fetched = self.fetch_chunks(&manifest, range).await;
            self.noted(&fetched);
            if matches!(
                fetched,
                Err(TierError::Damaged(_)) | Err(TierError::NotFound)
            ) {
                // A pack swept or damaged: this manifest is not used again.
                // If the tier's manifest of the version is still the one that
                // named it (not one published since), it goes, so that the
                // next publish starts afresh rather than naming it again.
                let key = version.key();
                self.remember(&key, Known::Absent(Instant::now()));
                if self.publishes() {
                    let object = manifest_key(version);
                    let now = self.bucket.get(&object).await.ok();
                    let same = now.and_then(|bytes| TierManifest::decode(&bytes, &key).ok());
                    if same.as_ref() == Some(manifest.as_ref()) {
                        let _ = self.bucket.delete(&object).await;
                    }
                }
            }
            fetched.map_err(|e| e.to_string())
        })
    }

    fn offer(&self, version: &FileVersion) {
        if !self.publishes() {
            return;
        }
        if let Some(offers) = &self.offers {
            if offers.try_send(version.clone()).is_err() {
                self.figures.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup that found no manifest, answered after the publisher noted
    /// one, must not hide it (a pinned track's packs left the session, and
    /// a sweep took them; CI saw it once).
    #[test]
    fn an_absence_found_late_does_not_hide_a_manifest_just_published() {
        let map: Mutex<HashMap<String, Known>> = Mutex::default();
        let manifest = Arc::new(TierManifest::default());
        remember(&map, "a", Known::Held(manifest.clone()));
        let kept = remember_absent(&map, "a").expect("the published manifest stays");
        assert!(Arc::ptr_eq(&kept, &manifest));
        assert!(matches!(map.lock().unwrap().get("a"), Some(Known::Held(_))));
        assert!(remember_absent(&map, "b").is_none());
        assert!(matches!(
            map.lock().unwrap().get("b"),
            Some(Known::Absent(_))
        ));
    }
}
