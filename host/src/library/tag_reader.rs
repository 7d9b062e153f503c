//! Reading tags with lofty from a file that is not here.
//!
//! lofty wants `Read + Seek`. [`RangeReader`] is a file of known size whose bytes
//! arrive on demand, in aligned blocks, from a fetch function (which goes through the
//! content cache, so what is read is stored as tag chunks). With audio properties
//! turned off, lofty only touches the tag areas: the head (ID3v2, FLAC metadata
//! blocks, MP4 atoms, Ogg comment pages) and, for ID3v1/APEv2, the tail. A 10 MB
//! title costs 10 MB; a 600 MB file with a 4 KB tag costs one 64 KiB fetch.
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

/// Fetches start at multiples of this.
const GRAIN: u64 = 16 * 1024;
/// The first fetch: most tag heads (a FLAC's metadata blocks before its
/// pictures, which lofty skips; an ID3v2 tag without art) fit in it, and it is
/// what a music server's tag reader asks of the mount later (its reads and the
/// kernel's read-ahead of them), answered from the cache with no origin.
const FIRST_FETCH: u64 = 4 * GRAIN;
/// Each fetch after it is this many times the last, up to [`BLOCK`]: a large
/// tag (an ID3v2 tag carrying its cover) costs a few round trips, not a
/// round trip per 16 KiB.
const GROWTH: u64 = 4;
/// The largest fetch.
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
/// most [`TAG_BUDGET`] bytes of it. Far away, the bytes and round trips of a
/// scan are those of its fetches: the first is small ([`FIRST_FETCH`]), each
/// later one [`GROWTH`] times the one before, up to [`BLOCK`].
pub struct RangeReader<F> {
    size: u64,
    pos: u64,
    /// Fetched bytes by where they start; none overlap.
    blocks: BTreeMap<u64, Vec<u8>>,
    /// The block the last read came from: lofty reads byte by byte at times,
    /// and those reads should not each search `blocks`.
    hot: Option<(u64, Vec<u8>)>,
    /// The size of the next fetch.
    next_fetch: u64,
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
            next_fetch: FIRST_FETCH,
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

    /// Makes a block holding `pos` the hot one, fetching it if none does.
    fn load(&mut self, pos: u64) -> io::Result<()> {
        let holds = |start: u64, bytes: &[u8]| start <= pos && pos < start + bytes.len() as u64;
        if self.hot.as_ref().is_some_and(|(s, b)| holds(*s, b)) {
            return Ok(());
        }
        let held = self
            .blocks
            .range(..=pos)
            .next_back()
            .filter(|(s, b)| holds(**s, b))
            .map(|(s, _)| *s);
        let (start, bytes) = match held {
            Some(start) => (start, self.blocks.remove(&start).expect("just found")),
            None => {
                let grain = pos / GRAIN * GRAIN;
                // Every block held, the hot one too: the fetch goes from the
                // end of the one before `pos` to the start of the next one,
                // never over either.
                let held = || {
                    self.blocks
                        .iter()
                        .map(|(s, b)| (*s, *s + b.len() as u64))
                        .chain(self.hot.as_ref().map(|(s, b)| (*s, *s + b.len() as u64)))
                };
                let start = held()
                    .filter(|(s, _)| *s <= pos)
                    .map(|(_, e)| e)
                    .max()
                    .map_or(grain, |e| grain.max(e));
                let end = held()
                    .filter(|(s, _)| *s > pos)
                    .map(|(s, _)| s)
                    .min()
                    .unwrap_or(self.size)
                    .min(grain + self.next_fetch)
                    .min(self.size);
                (start, self.fetch_range(start, end)?)
            }
        };
        if let Some((s, old)) = self.hot.replace((start, bytes)) {
            self.blocks.insert(s, old);
        }
        Ok(())
    }

    fn fetch_range(&mut self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        let len = (end - start) as u32;
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
        self.next_fetch = (self.next_fetch * GROWTH).min(BLOCK);
        Ok(bytes)
    }
}

impl<F: FnMut(u64, u32) -> io::Result<Vec<u8>>> Read for RangeReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        self.load(self.pos)?;
        let (start, block) = self.hot.as_ref().expect("just loaded");
        let skip = (self.pos - start) as usize;
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
        // The tail was the first fetch, the head the second (four times larger).
        assert_eq!(reader.fetched, 7 + (GROWTH * FIRST_FETCH).min(BLOCK));
        drop(reader);
        assert_eq!(calls, [10 * BLOCK, 0]);
    }

    /// A small tag costs one small fetch; reading on, each fetch is larger, up
    /// to a block, and nothing is fetched twice.
    #[test]
    fn fetches_start_small_and_grow() {
        let size = 4 * BLOCK;
        let mut calls = Vec::new();
        let mut reader = RangeReader::new(size, |offset, len| {
            calls.push((offset, u64::from(len)));
            Ok((offset..offset + len as u64).map(|i| i as u8).collect())
        });
        let mut head = [0u8; 100];
        reader.read_exact(&mut head).unwrap();
        assert_eq!(reader.fetched, FIRST_FETCH);
        let mut rest = vec![0u8; 2 * BLOCK as usize];
        reader.seek(SeekFrom::Start(0)).unwrap();
        reader.read_exact(&mut rest).unwrap();
        assert!(rest.iter().enumerate().all(|(i, b)| *b == i as u8));
        drop(reader);
        assert_eq!(
            calls,
            [
                (0, FIRST_FETCH),
                (FIRST_FETCH, BLOCK),
                (FIRST_FETCH + BLOCK, BLOCK),
            ]
        );
    }

    /// Regression (review): a read just before the block last read fetched
    /// over it, since that block was looked for among the others only.
    #[test]
    fn a_fetch_stops_at_the_block_last_read() {
        let size = 4 * BLOCK;
        let mut calls = Vec::new();
        let mut reader = RangeReader::new(size, |offset, len| {
            calls.push((offset, u64::from(len)));
            Ok((offset..offset + len as u64).map(|i| i as u8).collect())
        });
        let mut byte = [0u8; 1];
        reader.seek(SeekFrom::Start(2 * BLOCK)).unwrap();
        reader.read_exact(&mut byte).unwrap();
        reader.seek(SeekFrom::Start(2 * BLOCK - 10)).unwrap();
        let mut across = [0u8; 20];
        reader.read_exact(&mut across).unwrap();
        assert!(across
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (2 * BLOCK - 10 + i as u64) as u8));
        drop(reader);
        assert_eq!(
            calls,
            [(2 * BLOCK, FIRST_FETCH), (2 * BLOCK - GRAIN, GRAIN)]
        );
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
