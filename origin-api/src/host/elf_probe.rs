//! Whether a file could be a MusicFS plugin, read from its ELF headers without
//! loading it: a shared object whose dynamic symbol table defines the stamp.
//!
//! The host copies each plugin before loading it (see the loader); this check
//! comes first, so that a plugins folder holding other files (an executable,
//! `.rlib`s, notes) costs no copies. Only 64-bit little-endian ELF is parsed;
//! anything else is left to the dynamic loader's verdict.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::loader::LoadError;
use crate::stamp::STAMP_SYMBOL;

const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_DYN: u16 = 3;
const SHT_DYNSYM: u32 = 11;
const SECTION_HEADER: usize = 64;
const SYMBOL: usize = 24;
/// Dynamic symbol and string tables larger than this are not a plugin's.
const MAX_TABLE: u64 = 64 << 20;

fn malformed(what: &str) -> LoadError {
    LoadError::NotSharedLibrary(format!("malformed ELF: {what}"))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn read_range(file: &mut File, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
    let file_len = file.metadata().map_or(0, |m| m.len());
    if len > MAX_TABLE || offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(malformed("a table lies outside the file"));
    }
    let mut bytes = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|_| malformed("a table lies past the end of the file"))?;
    Ok(bytes)
}

/// `Ok` if the file at `path` is a shared object that defines the plugin stamp
/// (or is an ELF flavour this probe does not parse); otherwise the verdict.
pub fn check_plugin_file(path: &Path) -> Result<(), LoadError> {
    let mut file = File::open(path).map_err(|e| LoadError::NotSharedLibrary(e.to_string()))?;
    let mut header = [0u8; 64];
    match file.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(LoadError::NotSharedLibrary("file too short".into()))
        }
        Err(e) => return Err(LoadError::NotSharedLibrary(e.to_string())),
    }
    if &header[..4] != b"\x7fELF" {
        return Err(LoadError::NotSharedLibrary("not an ELF file".into()));
    }
    if header[4] != ELFCLASS64 || header[5] != ELFDATA2LSB {
        return Ok(());
    }
    let bad_header = || malformed("header");
    if u16_at(&header, 16).ok_or_else(bad_header)? != ET_DYN {
        return Err(LoadError::NotSharedLibrary(
            "an ELF file that is not a shared object".into(),
        ));
    }
    let section_table = u64_at(&header, 40).ok_or_else(bad_header)?;
    let entry_size = u16_at(&header, 58).ok_or_else(bad_header)? as usize;
    let sections = u16_at(&header, 60).ok_or_else(bad_header)? as u64;
    if sections == 0 {
        // No section table (stripped, or too many sections to count here): the
        // dynamic loader decides.
        return Ok(());
    }
    if entry_size != SECTION_HEADER {
        return Err(malformed("section header size"));
    }
    let table = read_range(&mut file, section_table, sections * SECTION_HEADER as u64)?;
    let section = |n: usize| table.get(n * SECTION_HEADER..(n + 1) * SECTION_HEADER);
    for n in 0..sections as usize {
        let sh = section(n).ok_or_else(|| malformed("section table"))?;
        if u32_at(sh, 4) != Some(SHT_DYNSYM) {
            continue;
        }
        let (offset, size) = (u64_at(sh, 24), u64_at(sh, 32));
        let strings = u32_at(sh, 40).and_then(|link| section(link as usize));
        let (Some(offset), Some(size), Some(strings)) = (offset, size, strings) else {
            return Err(malformed("dynamic symbol table"));
        };
        let symbols = read_range(&mut file, offset, size)?;
        let (Some(str_offset), Some(str_size)) = (u64_at(strings, 24), u64_at(strings, 32)) else {
            return Err(malformed("dynamic string table"));
        };
        let names = read_range(&mut file, str_offset, str_size)?;
        let defines_stamp = symbols.chunks_exact(SYMBOL).any(|symbol| {
            let defined = u16_at(symbol, 6).is_some_and(|index| index != 0);
            let name = u32_at(symbol, 0)
                .and_then(|at| names.get(at as usize..))
                .and_then(|rest| rest.split(|b| *b == 0).next());
            defined && name == Some(STAMP_SYMBOL.as_bytes())
        });
        return if defines_stamp {
            Ok(())
        } else {
            Err(LoadError::NotAPlugin)
        };
    }
    Err(LoadError::NotAPlugin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_shared_objects_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a plugin at all, just some notes").unwrap();
        assert!(matches!(
            check_plugin_file(&text),
            Err(LoadError::NotSharedLibrary(_))
        ));
        let short = dir.path().join("short.so");
        std::fs::write(&short, b"\x7fEL").unwrap();
        assert!(matches!(
            check_plugin_file(&short),
            Err(LoadError::NotSharedLibrary(_))
        ));
        // A header that claims a section table far past the end of the file.
        let mut lying = vec![0u8; 64];
        lying[..6].copy_from_slice(b"\x7fELF\x02\x01");
        lying[16] = ET_DYN as u8;
        lying[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        lying[58] = SECTION_HEADER as u8;
        lying[60] = 3;
        let lying_path = dir.path().join("lying.so");
        std::fs::write(&lying_path, &lying).unwrap();
        assert!(matches!(
            check_plugin_file(&lying_path),
            Err(LoadError::NotSharedLibrary(_))
        ));
    }

    #[test]
    fn an_executable_is_not_a_plugin() {
        // The test binary itself: an ELF executable (a PIE is ET_DYN too) whose
        // dynamic symbols do not define the stamp.
        let exe = std::env::current_exe().unwrap();
        assert!(check_plugin_file(&exe).is_err());
    }
}
