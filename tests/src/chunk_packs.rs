//! The chunk packs of a cache folder, read as the host writes them (records of
//! a 40-byte header, `MFC1`, length as u32 little-endian, BLAKE3 name, then the
//! bytes), so that fault tests can count and damage chunks on disk.

use std::path::{Path, PathBuf};

/// One chunk on disk.
pub struct Record {
    /// Its pack file.
    pub pack: PathBuf,
    /// Where its bytes start in the pack.
    pub data_at: u64,
    /// How many bytes it holds.
    pub len: u64,
}

/// The pack files of the cache at `cache`, audio and tag packs, in order.
pub fn packs(cache: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(cache.join("chunks")) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    found.sort();
    found
}

/// Whether `pack` holds tag chunks.
pub fn is_tag_pack(pack: &Path) -> bool {
    pack.to_string_lossy().ends_with(".tag.pack")
}

/// Every whole record in the packs of the cache at `cache`.
pub fn records(cache: &Path) -> Vec<Record> {
    let mut all = Vec::new();
    for pack in packs(cache) {
        let Ok(bytes) = std::fs::read(&pack) else {
            continue;
        };
        let mut at = 0usize;
        while at + 40 <= bytes.len() && &bytes[at..at + 4] == b"MFC1" {
            let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            if at + 40 + len > bytes.len() {
                break;
            }
            all.push(Record {
                pack: pack.clone(),
                data_at: (at + 40) as u64,
                len: len as u64,
            });
            at += 40 + len;
        }
    }
    all
}

/// Flips one bit of a record's bytes, `into` bytes in.
pub fn flip(record: &Record, into: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&record.pack)
        .unwrap();
    let mut byte = [0u8];
    let at = record.data_at + into.min(record.len - 1);
    file.read_exact_at(&mut byte, at).unwrap();
    byte[0] ^= 0x01;
    file.write_all_at(&byte, at).unwrap();
}
