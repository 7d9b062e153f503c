//! The index of the chunk store, in memory, and its eviction policy: where
//! each chunk is, what each pack holds, and which pack goes first when the
//! store is over its limit. Pure bookkeeping: no disk here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::sync::Arc;

use crate::cache::chunker::ChunkId;

/// The clock starts here; chunks found on disk at open are numbered below it.
const FOUND_CLOCK_BASE: u64 = 1 << 40;

/// What a chunk is kept for, which decides when it may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Keep {
    /// Audio: evicted first.
    Audio,
    /// A tag head or tail: evicted after audio.
    Tag,
    /// Part of a pinned file: never evicted, not counted against the limit.
    Pinned,
}

impl Keep {
    /// Its slot in [`Index::writing`].
    fn slot(self) -> usize {
        self as usize
    }
}

/// Where one chunk is, and what it is kept for.
#[derive(Clone, Copy)]
pub struct Entry {
    pub pack: u32,
    /// Where the chunk's bytes start in the pack (after its header).
    pub offset: u64,
    pub len: u32,
    pub last_use: u64,
    pub tag: bool,
    pub pinned: bool,
}

/// One pack file.
pub struct Pack {
    pub file: Arc<File>,
    /// Bytes in the file (records appended so far).
    pub size: u64,
    pub class: Keep,
    pub last_use: u64,
    /// Bytes of the chunks indexed here (not duplicates, not forgotten ones).
    pub live: u64,
    /// Of those, bytes of pinned chunks.
    pub pinned: u64,
    /// The chunks indexed here, in the order they were added (one forgotten
    /// since, or indexed again elsewhere, is skipped by [`Index::chunks_in`]):
    /// eviction costs the pack, not the cache.
    pub chunks: Vec<ChunkId>,
    /// Records reserved and not yet published: a pack being written is not
    /// evicted.
    pub writes: u32,
}

impl Pack {
    /// A pack of `size` bytes in `file`, with no chunk indexed yet.
    pub fn new(file: File, size: u64, class: Keep, last_use: u64) -> Self {
        Pack {
            file: Arc::new(file),
            size,
            class,
            last_use,
            live: 0,
            pinned: 0,
            chunks: Vec::new(),
            writes: 0,
        }
    }
}

/// Every chunk and pack the store knows of.
#[derive(Default)]
pub struct Index {
    pub entries: HashMap<ChunkId, Entry>,
    pub packs: BTreeMap<u32, Pack>,
    /// The packs being appended to, by [`Keep::slot`].
    writing: [Option<u32>; 3],
    pub next_pack: u32,
    pub total: u64,
    /// Of [`Self::total`], bytes of pinned chunks.
    pub pinned_total: u64,
    /// The chunks of pinned files, stored or not.
    pub pinned_ids: HashSet<ChunkId>,
    /// Whether the pinned set has been given since open (the set read at
    /// open is then out of date).
    pub pinned_given: bool,
    pub clock: u64,
}

impl Index {
    /// An empty index, its clock past every use of a chunk found on disk.
    pub fn new() -> Self {
        Index {
            clock: FOUND_CLOCK_BASE,
            ..Index::default()
        }
    }

    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Bytes that count against the limit.
    pub fn evictable(&self) -> u64 {
        self.total - self.pinned_total
    }

    pub fn add(&mut self, id: ChunkId, entry: Entry) {
        let len = entry.len as u64;
        self.total += len;
        if entry.pinned {
            self.pinned_total += len;
        }
        if let Some(pack) = self.packs.get_mut(&entry.pack) {
            pack.live += len;
            if entry.pinned {
                pack.pinned += len;
            }
            pack.chunks.push(id);
        }
        self.entries.insert(id, entry);
    }

    pub fn forget(&mut self, id: &ChunkId) {
        let Some(entry) = self.entries.remove(id) else {
            return;
        };
        let len = entry.len as u64;
        self.total -= len;
        if entry.pinned {
            self.pinned_total -= len;
        }
        if let Some(pack) = self.packs.get_mut(&entry.pack) {
            pack.live -= len;
            if entry.pinned {
                pack.pinned -= len;
            }
        }
    }

    /// Marks a stored chunk pinned or not, keeping the counts.
    pub fn set_pin(&mut self, id: &ChunkId, pinned: bool) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if entry.pinned == pinned {
            return;
        }
        entry.pinned = pinned;
        let (len, pack) = (entry.len as u64, entry.pack);
        let pack = self.packs.get_mut(&pack);
        if pinned {
            self.pinned_total += len;
            if let Some(pack) = pack {
                pack.pinned += len;
            }
        } else {
            self.pinned_total -= len;
            if let Some(pack) = pack {
                pack.pinned -= len;
            }
        }
    }

    /// The pack being appended to for `class`.
    pub fn writing(&self, class: Keep) -> Option<u32> {
        self.writing[class.slot()]
    }

    /// Makes `n` the pack appended to for `class`.
    pub fn set_writing(&mut self, class: Keep, n: u32) {
        self.writing[class.slot()] = Some(n);
    }

    /// Appends nothing more to pack `n`.
    pub fn stop_writing(&mut self, n: u32) {
        for slot in self.writing.iter_mut() {
            if *slot == Some(n) {
                *slot = None;
            }
        }
    }

    /// The chunks indexed in pack `n`, with their entries.
    pub fn chunks_in(&self, n: u32) -> impl Iterator<Item = (ChunkId, Entry)> + '_ {
        let listed = self.packs.get(&n).map_or(&[][..], |p| &p.chunks[..]);
        let mut seen = HashSet::new();
        listed.iter().filter_map(move |id| {
            let entry = self.entries.get(id)?;
            (entry.pack == n && seen.insert(*id)).then_some((*id, *entry))
        })
    }

    /// The pack to evict next: the least recently used, audio before tags
    /// before pins, the packs being appended to only when nothing else is
    /// left, and only a pack with something that may go and no write in
    /// flight.
    pub fn victim(&self) -> Option<u32> {
        self.packs
            .iter()
            .filter(|(_, p)| (p.live > p.pinned || p.live == 0) && p.writes == 0)
            .min_by_key(|(n, p)| (self.writing.contains(&Some(**n)), p.class, p.last_use))
            .map(|(n, _)| *n)
    }
}

/// Whether a chunk of a pack of `class` that goes must be stored anew: a
/// pinned one, or a tag outside a tag pack.
pub fn must_keep(entry: &Entry, class: Keep) -> bool {
    entry.pinned || (entry.tag && class != Keep::Tag)
}
