//! Reading tags with lofty from a file that is not here.
//!
//! lofty wants `Read + Seek`. [`RangeReader`] is a file of known size whose bytes
//! arrive on demand, in aligned blocks, from a fetch function (which goes through the
//! content cache, so what is read is stored as tag chunks). With audio properties
//! turned off, lofty only touches the tag areas: the head (ID3v2, FLAC metadata
//! blocks, MP4 atoms, Ogg comment pages) and, for ID3v1/APEv2, the tail. A 10 MB
//! title costs 10 MB; a 600 MB file with a 4 KB tag costs one 256 KiB block.
//!
//! Not every file is that kind. Given a file it takes for MPEG with junk before
//! the first frame (noise, a damaged track, a stray non-audio file named `.mp3`),
//! lofty searches the rest of the file for two frames in a row, one byte per
//! `read`. A reader has [`TAG_BUDGET`] bytes to spend: past that its fetches fail,
//! the scan records the file as one whose tags were not found, and a library of
//! such files costs no more than its tag areas would.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

use lofty::config::{ParseOptions, ParsingMode};
use lofty::prelude::{Accessor, ItemKey, TaggedFileExt};
use lofty::probe::Probe;
use serde::{Deserialize, Serialize};

/// The size of one fetch.
const BLOCK: u64 = 256 * 1024;

/// The most one file's tags may cost. Tag areas are small, but an ID3v2 tag
/// carries its cover art inline (lofty reads the whole tag; FLAC pictures it
/// skips), and covers of several MB are common.
pub const TAG_BUDGET: u64 = 16 << 20;

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

/// A file of `size` bytes read block by block through `fetch(offset, len)`, at
/// most [`TAG_BUDGET`] bytes of it.
pub struct RangeReader<F> {
    size: u64,
    pos: u64,
    blocks: BTreeMap<u64, Vec<u8>>,
    /// The block the last read came from: lofty reads byte by byte at times,
    /// and those reads should not each search `blocks`.
    hot: Option<(u64, Vec<u8>)>,
    fetch: F,
    /// Bytes fetched so far.
    pub fetched: u64,
    over_budget: bool,
}

impl<F: FnMut(u64, u32) -> io::Result<Vec<u8>>> RangeReader<F> {
    /// A reader over a file of `size` bytes.
    pub fn new(size: u64, fetch: F) -> Self {
        RangeReader {
            size,
            pos: 0,
            blocks: BTreeMap::new(),
            hot: None,
            fetch,
            fetched: 0,
            over_budget: false,
        }
    }

    /// The file's tags, as [`read_tags`] finds them within [`TAG_BUDGET`]. A
    /// parse that ran out of budget is a problem, whatever the parser made of
    /// it (lofty takes some failed reads for "not here" and goes on).
    pub fn tags(&mut self) -> Result<Tags, String> {
        let tags = read_tags(&mut *self);
        if self.over_budget {
            return Err(format!(
                "no tags found in the first {} MiB: not an audio file lofty knows, or a damaged one",
                TAG_BUDGET >> 20
            ));
        }
        tags
    }

    /// Makes the block at `start` the hot one.
    fn load(&mut self, start: u64) -> io::Result<()> {
        if self.hot.as_ref().is_some_and(|(s, _)| *s == start) {
            return Ok(());
        }
        let bytes = match self.blocks.remove(&start) {
            Some(bytes) => bytes,
            None => self.fetch_block(start)?,
        };
        if let Some((s, old)) = self.hot.replace((start, bytes)) {
            self.blocks.insert(s, old);
        }
        Ok(())
    }

    fn fetch_block(&mut self, start: u64) -> io::Result<Vec<u8>> {
        let len = BLOCK.min(self.size - start) as u32;
        if self.fetched + u64::from(len) > TAG_BUDGET {
            self.over_budget = true;
            return Err(io::Error::other("over the tag budget"));
        }
        let bytes = (self.fetch)(start, len)?;
        if bytes.len() != len as usize {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read at {start}: {} of {len} bytes", bytes.len()),
            ));
        }
        self.fetched += bytes.len() as u64;
        Ok(bytes)
    }
}

impl<F: FnMut(u64, u32) -> io::Result<Vec<u8>>> Read for RangeReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let start = self.pos / BLOCK * BLOCK;
        let skip = (self.pos - start) as usize;
        self.load(start)?;
        let block = &self.hot.as_ref().expect("just loaded").1;
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

    /// Regression: lofty took a file of noise that happens to start with an
    /// MPEG frame sync for an MP3 with junk before its first frame, and read
    /// all of it, one byte per call, looking for two frames in a row: a
    /// 50 MB file cost 50 MB of origin reads and a core for seconds.
    #[test]
    fn a_file_that_is_not_audio_costs_the_budget_at_most() {
        let size = 4 * TAG_BUDGET;
        let noise = |offset: u64, len: u32| {
            // No 0xFF anywhere past the first two bytes: no second frame sync.
            Ok((offset..offset + u64::from(len))
                .map(|i| match i {
                    0 => 0xFF,
                    1 => 0xFB,
                    _ => (i.wrapping_mul(0x9E37_79B9) >> 7) as u8 & 0x7F,
                })
                .collect())
        };
        let mut reader = RangeReader::new(size, noise);
        let problem = reader.tags().unwrap_err();
        assert!(
            problem.contains("no tags found in the first 16 MiB"),
            "{problem}"
        );
        assert!(reader.fetched <= TAG_BUDGET, "{} bytes", reader.fetched);
    }
}
