//! A version's manifest in the tier: its chunks in file order, none
//! overlapping, each with the pack object and the offset that hold its
//! bytes. The object ends in the BLAKE3 of all before it, and names the
//! version it is of: a damaged or foreign manifest is refused, never used.
//!
//! Layout (little-endian): `MFTIERM1`; the version's key (u32 length, bytes);
//! the packs (u32 count, 32-byte names); the chunks (u32 count; each the
//! offset u64, length u32, name 32 bytes, pack u32, offset of its bytes in
//! the pack u64); the BLAKE3 of all of it. 56 bytes a chunk: about 35 KB for
//! a 40 MB track.
//!
//! A manifest lies in its file's folder (`manifests/<origin and path>/
//! <version>`): a mount publishing a new version of a file (a retag) lists
//! the folder, finds the version before, and places the chunks the two share
//! where the tier holds them already, uploading only the changed ones.

use std::sync::Arc;

use crate::cache::chunker::{ChunkId, MAX_CHUNK};
use crate::cache::manifest::FileVersion;
use crate::cache::shared::{SharedChunk, SharedChunks};

const MAGIC: &[u8; 8] = b"MFTIERM1";

/// A pack object's name: the BLAKE3 of its bytes.
pub type PackName = [u8; 32];

/// Where a chunk's bytes are in the tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// The pack object, as an index into [`TierManifest::packs`].
    pub pack: u32,
    /// Where the chunk's bytes start in it.
    pub at: u64,
}

/// A version's manifest in the tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierManifest {
    /// The pack objects its chunks are in.
    pub packs: Vec<PackName>,
    /// The chunks, in file order, none overlapping (shared: a reader
    /// holds them while it fetches, without a copy).
    pub chunks: Arc<SharedChunks>,
    /// Where each chunk is, in the same order.
    pub places: Vec<Place>,
}

/// The folder of the manifests of every version of `version`'s file.
pub fn file_folder(version: &FileVersion) -> String {
    let file = format!("{}\0{}", version.origin, version.path);
    format!(
        "manifests/{}",
        &blake3::hash(file.as_bytes()).to_hex()[..32]
    )
}

/// The object key of a version's manifest.
pub fn manifest_key(version: &FileVersion) -> String {
    format!(
        "{}/{}",
        file_folder(version),
        blake3::hash(version.key().as_bytes()).to_hex()
    )
}

/// The object key of a pack.
pub fn pack_key(name: &PackName) -> String {
    format!("packs/{}", blake3::Hash::from_bytes(*name).to_hex())
}

impl TierManifest {
    /// The stored form, for the version whose key is `version_key`.
    pub fn encode(&self, version_key: &str) -> Vec<u8> {
        let chunks = self.chunks.chunks();
        let mut out =
            Vec::with_capacity(64 + version_key.len() + 32 * self.packs.len() + 56 * chunks.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(version_key.len() as u32).to_le_bytes());
        out.extend_from_slice(version_key.as_bytes());
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for pack in &self.packs {
            out.extend_from_slice(pack);
        }
        out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        for (chunk, place) in chunks.iter().zip(&self.places) {
            out.extend_from_slice(&chunk.offset.to_le_bytes());
            out.extend_from_slice(&chunk.len.to_le_bytes());
            out.extend_from_slice(&chunk.id.0);
            out.extend_from_slice(&place.pack.to_le_bytes());
            out.extend_from_slice(&place.at.to_le_bytes());
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// Reads the stored form of the manifest of `version_key`; an error says
    /// why it is refused (damaged, of another version, not a manifest).
    pub fn decode(bytes: &[u8], version_key: &str) -> Result<TierManifest, String> {
        TierManifest::decode_of(bytes, Some(version_key))
    }

    /// A stored manifest of whichever version it names (another version of
    /// a file, whose chunks a new version may share).
    pub fn decode_any_version(bytes: &[u8]) -> Result<TierManifest, String> {
        TierManifest::decode_of(bytes, None)
    }

    fn decode_of(bytes: &[u8], version_key: Option<&str>) -> Result<TierManifest, String> {
        let body_len = bytes
            .len()
            .checked_sub(32)
            .ok_or("too short for a manifest")?;
        let (body, sum) = bytes.split_at(body_len);
        if blake3::hash(body).as_bytes() != sum {
            return Err("its checksum does not match".into());
        }
        let mut r = Reader { bytes: body };
        if r.take(8)? != MAGIC {
            return Err("not a MusicFS tier manifest".into());
        }
        let key_len = r.u32()? as usize;
        let named = r.take(key_len)?;
        if version_key.is_some_and(|key| named != key.as_bytes()) {
            return Err("it is the manifest of another version".into());
        }
        let packs = (0..r.u32()?)
            .map(|_| Ok(r.take(32)?.try_into().expect("32 bytes")))
            .collect::<Result<Vec<PackName>, String>>()?;
        let count = r.u32()? as usize;
        let mut chunks = Vec::with_capacity(count.min(body.len() / 56));
        let mut places = Vec::with_capacity(chunks.capacity());
        for _ in 0..count {
            let offset = r.u64()?;
            let len = r.u32()?;
            let id = ChunkId(r.take(32)?.try_into().expect("32 bytes"));
            let place = Place {
                pack: r.u32()?,
                at: r.u64()?,
            };
            if place.pack as usize >= packs.len() {
                return Err("a chunk names a pack it does not list".into());
            }
            if len as usize > MAX_CHUNK {
                return Err(format!("a chunk of {len} bytes, past the largest"));
            }
            chunks.push(SharedChunk { offset, len, id });
            places.push(place);
        }
        if !r.bytes.is_empty() {
            return Err("bytes after its last chunk".into());
        }
        let chunks =
            Arc::new(SharedChunks::new(chunks).ok_or("its chunks overlap or are out of order")?);
        Ok(TierManifest {
            packs,
            chunks,
            places,
        })
    }
}

impl TierManifest {
    /// The packs a stored manifest names, whatever version it is of; `None`
    /// if it is damaged.
    pub fn packs_named(bytes: &[u8]) -> Option<Vec<PackName>> {
        let body = &bytes[..bytes.len().checked_sub(32)?];
        if blake3::hash(body).as_bytes() != &bytes[body.len()..] {
            return None;
        }
        let mut r = Reader { bytes: body };
        if r.take(8).ok()? != MAGIC {
            return None;
        }
        let key_len = r.u32().ok()? as usize;
        r.take(key_len).ok()?;
        (0..r.u32().ok()?)
            .map(|_| Some(r.take(32).ok()?.try_into().expect("32 bytes")))
            .collect()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("cut short".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TierManifest {
        let chunk = |offset, len, n| SharedChunk {
            offset,
            len,
            id: ChunkId([n; 32]),
        };
        TierManifest {
            packs: vec![[7; 32], [8; 32]],
            chunks: Arc::new(SharedChunks::new(vec![chunk(0, 100, 1), chunk(100, 50, 2)]).unwrap()),
            places: vec![Place { pack: 0, at: 40 }, Place { pack: 1, at: 180 }],
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let bytes = sample().encode("o|a.flac|150|1");
        assert_eq!(TierManifest::decode(&bytes, "o|a.flac|150|1"), Ok(sample()));
    }

    #[test]
    fn a_damaged_foreign_or_cut_manifest_is_refused() {
        let key = "o|a.flac|150|1";
        let bytes = sample().encode(key);
        for at in [0, 9, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(TierManifest::decode(&bad, key).is_err(), "flip at {at}");
        }
        assert!(TierManifest::decode(&bytes[..bytes.len() - 3], key).is_err());
        assert!(TierManifest::decode(&bytes, "o|b.flac|150|1").is_err());
        assert!(TierManifest::decode(b"", key).is_err());
        assert_eq!(TierManifest::packs_named(&bytes), Some(sample().packs));
        assert_eq!(TierManifest::packs_named(&bytes[1..]), None);
    }

    #[test]
    fn every_version_of_a_file_lies_in_the_files_folder() {
        let version = |path: &str, size| FileVersion {
            origin: "nas".into(),
            path: path.into(),
            size,
            mtime_ns: 1,
            version: None,
        };
        let (old, new) = (version("a/b.flac", 10), version("a/b.flac", 11));
        assert_eq!(file_folder(&old), file_folder(&new));
        assert_ne!(manifest_key(&old), manifest_key(&new));
        assert!(manifest_key(&old).starts_with(&format!("{}/", file_folder(&old))));
        assert_ne!(file_folder(&old), file_folder(&version("a/c.flac", 10)));
        // A manifest read as "any version" is the same manifest.
        let bytes = sample().encode("o|a.flac|150|1");
        assert_eq!(TierManifest::decode_any_version(&bytes), Ok(sample()));
        assert!(TierManifest::decode_any_version(&bytes[1..]).is_err());
    }
}
