//! The pack format: how chunks lie on disk.
//!
//! A pack is a file of records, each a 40-byte header (`MFC1`, the length as
//! u32 little-endian, the chunk's BLAKE3 name) and the chunk's bytes. Packs
//! are named `<n>.pack` (audio), `<n>.tag.pack` (tags) and `<n>.pin.pack`
//! (pinned files), `n` counting up and never reused. A pack only grows, by
//! whole records written with one `pwritev`; a record cut short by a crash is
//! the pack's torn tail, found and cut off when the pack is next read.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::index::Keep;
use crate::cache::chunker::ChunkId;

const MAGIC: &[u8; 4] = b"MFC1";
/// The bytes of a record before its chunk's.
pub const HEADER: u64 = 40;
/// The largest pack.
pub const PACK_MAX: u64 = 64 << 20;

/// The pack file's suffix for chunks kept for `class`.
fn suffix(class: Keep) -> &'static str {
    match class {
        Keep::Audio => ".pack",
        Keep::Tag => ".tag.pack",
        Keep::Pinned => ".pin.pack",
    }
}

/// The path of pack `n`, holding chunks kept for `class`.
pub fn pack_path(root: &Path, n: u32, class: Keep) -> PathBuf {
    root.join(format!("{n:08}{}", suffix(class)))
}

/// The pack files under `root`: (number, what it holds), in number order.
pub fn pack_files(root: &Path) -> std::io::Result<Vec<(u32, Keep)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        // The longer suffixes first: every one ends in `.pack`.
        let Some((number, class)) = [Keep::Tag, Keep::Pinned, Keep::Audio]
            .into_iter()
            .find_map(|class| Some((name.strip_suffix(suffix(class))?, class)))
        else {
            continue;
        };
        if let Ok(n) = number.parse() {
            found.push((n, class));
        }
    }
    found.sort();
    Ok(found)
}

/// A record found in a pack: the chunk, where its bytes start, their length.
pub type Found = (ChunkId, u64, u32);

/// Reads the record headers of one pack, and the length of what is whole. A
/// torn tail is cut off.
pub fn scan_pack(file: &File) -> std::io::Result<(Vec<Found>, u64)> {
    let size = file.metadata()?.len();
    let mut records = Vec::new();
    let mut at = 0u64;
    let mut header = [0u8; HEADER as usize];
    while at + HEADER <= size {
        file.read_exact_at(&mut header, at)?;
        let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if &header[..4] != MAGIC || at + HEADER + len as u64 > size {
            break;
        }
        let id = ChunkId(header[8..40].try_into().expect("32 bytes"));
        records.push((id, at + HEADER, len));
        at += HEADER + len as u64;
    }
    if at < size {
        tracing::warn!(
            kept = at,
            size,
            "a chunk pack ends in a torn record; cutting it off"
        );
        file.set_len(at)?;
    }
    Ok((records, at))
}

/// Writes the record of chunk `id` (`bytes`) at `at`: its header then its
/// bytes in one `pwritev`, the bytes not copied into one buffer first (that
/// copy was a tenth of a cold read's CPU).
pub fn write_record(file: &File, at: u64, id: &ChunkId, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    write_all_at(file, [&record_header(id, len)[..], bytes], at)
}

/// The header of the record of chunk `id`, `len` bytes long (the shared
/// tier's pack objects are records of this form too).
pub fn record_header(id: &ChunkId, len: u32) -> [u8; HEADER as usize] {
    let mut header = [0u8; HEADER as usize];
    header[..4].copy_from_slice(MAGIC);
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..].copy_from_slice(&id.0);
    header
}

/// The length on disk of the record of a chunk of `len` bytes.
pub fn record_len(len: u32) -> u64 {
    HEADER + len as u64
}

/// `len` bytes of `file` at `at`, read into a new buffer that is not zeroed
/// first: zeroing it cost a sixth of a read from the chunk cache.
pub fn read_new_at(file: &File, len: usize, at: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(len);
    read_append_at(file, len, at, &mut bytes)?;
    Ok(bytes)
}

/// Appends `len` bytes of `file` at `at` to `out`, never zeroing the room
/// first. On an error `out` is as it was.
pub fn read_append_at(file: &File, len: usize, at: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let start = out.len();
    out.reserve(len);
    while out.len() < start + len {
        let filled = out.len() - start;
        let offset = match libc::off_t::try_from(at + filled as u64) {
            Ok(offset) => offset,
            Err(e) => {
                out.truncate(start);
                return Err(std::io::Error::other(e));
            }
        };
        let spare = &mut out.spare_capacity_mut()[..len - filled];
        // SAFETY: the kernel writes at most `spare.len()` bytes, all within the
        // vector's spare capacity.
        let read = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                offset,
            )
        };
        match read {
            // SAFETY: the kernel has initialised the next `n` bytes.
            n if n > 0 => unsafe { out.set_len(out.len() + n as usize) },
            0 => {
                out.truncate(start);
                return Err(ErrorKind::UnexpectedEof.into());
            }
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    out.truncate(start);
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Writes `header` then `body` at `at` in one `pwritev` (looping over short
/// writes).
fn write_all_at(file: &File, [header, body]: [&[u8]; 2], at: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let total = header.len() + body.len();
    let mut done = 0;
    while done < total {
        let parts: [&[u8]; 2] = if done < header.len() {
            [&header[done..], body]
        } else {
            [&[], &body[done - header.len()..]]
        };
        let iov = parts.map(|part| libc::iovec {
            iov_base: part.as_ptr() as *mut libc::c_void,
            iov_len: part.len(),
        });
        let offset = libc::off_t::try_from(at + done as u64).map_err(std::io::Error::other)?;
        // SAFETY: both iovecs point into live slices of the lengths given, and
        // the kernel only reads from them.
        let written = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), 2, offset) };
        match written {
            n if n > 0 => done += n as usize,
            0 => return Err(ErrorKind::WriteZero.into()),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_into_a_new_buffer_is_exact_and_a_short_file_is_eof() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            read_new_at(&file, 70_000, 1234).unwrap(),
            data[1234..71_234]
        );
        assert_eq!(read_new_at(&file, 0, 5).unwrap(), Vec::<u8>::new());
        let mut out = b"kept".to_vec();
        read_append_at(&file, 3, 1234, &mut out).unwrap();
        assert_eq!(out, [b"kept".as_slice(), &data[1234..1237]].concat());
        let err = read_append_at(&file, 10, 199_995, &mut out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        assert_eq!(out.len(), 7, "a failed read leaves what was there");
        let err = read_new_at(&file, 10, 199_995).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn records_written_are_found_again_and_a_torn_one_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = pack_path(dir.path(), 3, Keep::Tag);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let (a, b) = (ChunkId::of(b"x"), ChunkId::of(b"yy"));
        write_record(&file, 0, &a, b"x").unwrap();
        write_record(&file, record_len(1), &b, b"yy").unwrap();
        let (found, size) = scan_pack(&file).unwrap();
        assert_eq!(found, vec![(a, HEADER, 1), (b, record_len(1) + HEADER, 2)]);
        assert_eq!(size, record_len(1) + record_len(2));
        file.set_len(size - 1).unwrap();
        let (found, size) = scan_pack(&file).unwrap();
        assert_eq!(found, vec![(a, HEADER, 1)]);
        assert_eq!(size, record_len(1));
        assert_eq!(file.metadata().unwrap().len(), record_len(1));
        assert_eq!(pack_files(dir.path()).unwrap(), vec![(3, Keep::Tag)]);
    }
}
