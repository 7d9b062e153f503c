//! Reading tags with lofty from a file that is not here.
//!
//! lofty wants `Read + Seek`. [`RangeReader`] is a file of known size whose bytes
//! arrive on demand, in aligned blocks, from a fetch function (which goes through the
//! content cache, so what is read is stored as tag chunks). With audio properties
//! turned off, lofty only touches the tag areas: the head (ID3v2, FLAC metadata
//! blocks, MP4 atoms, Ogg comment pages) and, for ID3v1/APEv2, the tail. A 10 MB
//! title costs 10 MB; a 600 MB file with a 4 KB tag costs one 256 KiB block.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

use lofty::config::{ParseOptions, ParsingMode};
use lofty::prelude::{Accessor, ItemKey, TaggedFileExt};
use lofty::probe::Probe;
use serde::{Deserialize, Serialize};

/// The size of one fetch.
const BLOCK: u64 = 256 * 1024;

/// The tags the layout uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    pub title: Option<String>,
    pub artist: Option<String>,
    pub album_artist: Option<String>,
    pub album: Option<String>,
    pub track: Option<u32>,
    pub disc: Option<u32>,
    pub disc_total: Option<u32>,
    pub compilation: bool,
}

/// A file of `size` bytes read block by block through `fetch(offset, len)`.
pub struct RangeReader<F> {
    size: u64,
    pos: u64,
    blocks: BTreeMap<u64, Vec<u8>>,
    fetch: F,
    /// Bytes fetched so far.
    pub fetched: u64,
}

impl<F: FnMut(u64, u32) -> io::Result<Vec<u8>>> RangeReader<F> {
    /// A reader over a file of `size` bytes.
    pub fn new(size: u64, fetch: F) -> Self {
        RangeReader {
            size,
            pos: 0,
            blocks: BTreeMap::new(),
            fetch,
            fetched: 0,
        }
    }

    fn block(&mut self, start: u64) -> io::Result<&[u8]> {
        if !self.blocks.contains_key(&start) {
            let len = BLOCK.min(self.size - start) as u32;
            let bytes = (self.fetch)(start, len)?;
            if bytes.len() != len as usize {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short read at {start}: {} of {len} bytes", bytes.len()),
                ));
            }
            self.fetched += bytes.len() as u64;
            self.blocks.insert(start, bytes);
        }
        Ok(&self.blocks[&start])
    }
}

impl<F: FnMut(u64, u32) -> io::Result<Vec<u8>>> Read for RangeReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let start = self.pos / BLOCK * BLOCK;
        let skip = (self.pos - start) as usize;
        let block = self.block(start)?;
        let n = (block.len() - skip).min(buf.len());
        buf[..n].copy_from_slice(&block[skip..skip + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<F> Seek for RangeReader<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}

/// Reads the tags of a file from `reader`. A file with no tags gives empty tags; a
/// file lofty cannot parse gives an error message for the scan report, and so does
/// one that makes it panic: tags are untrusted input, and a bad file must never
/// cost the scan (or the record of the file).
pub fn read_tags<R: Read + Seek>(reader: R) -> Result<Tags, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse_tags(reader)))
        .unwrap_or_else(|_| Err(PARSER_PANICKED.to_owned()))
}

/// The problem recorded for a file that made the tag parser panic.
pub const PARSER_PANICKED: &str = "the tag parser failed on this file";

fn parse_tags<R: Read + Seek>(reader: R) -> Result<Tags, String> {
    let options = ParseOptions::new()
        .read_properties(false)
        .read_cover_art(false)
        .parsing_mode(ParsingMode::Relaxed);
    let probe = Probe::new(reader)
        .options(options)
        .guess_file_type()
        .map_err(|e| format!("cannot probe: {e}"))?;
    let tagged = probe.read().map_err(|e| format!("cannot read tags: {e}"))?;
    let Some(tag) = tagged.primary_tag().or_else(|| tagged.first_tag()) else {
        return Ok(Tags::default());
    };
    let text = |s: Option<std::borrow::Cow<'_, str>>| {
        s.map(|s| s.into_owned()).filter(|s| !s.trim().is_empty())
    };
    let compilation = tag
        .get_string(ItemKey::FlagCompilation)
        .is_some_and(|v| matches!(v.trim(), "1" | "true" | "True" | "TRUE"));
    Ok(Tags {
        title: text(tag.title()),
        artist: text(tag.artist()),
        album_artist: tag
            .get_string(ItemKey::AlbumArtist)
            .map(str::to_owned)
            .filter(|s| !s.trim().is_empty()),
        album: text(tag.album()),
        track: tag.track(),
        disc: tag.disk(),
        disc_total: tag.disk_total(),
        compilation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_reader_fetches_only_the_blocks_it_needs() {
        let size = 10 * BLOCK + 7;
        let mut calls = Vec::new();
        let mut reader = RangeReader::new(size, |offset, len| {
            calls.push(offset);
            Ok((offset..offset + len as u64).map(|i| i as u8).collect())
        });
        let mut buf = [0u8; 4];
        reader.seek(SeekFrom::End(-3)).unwrap();
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        assert_eq!(
            buf[..3],
            [(size - 3) as u8, (size - 2) as u8, (size - 1) as u8]
        );
        reader.seek(SeekFrom::Start(5)).unwrap();
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [5, 6, 7, 8]);
        assert_eq!(reader.fetched, 7 + BLOCK);
        drop(reader);
        assert_eq!(calls, [10 * BLOCK, 0]);
    }
}
