//! A small library to mount when none is given: real WAV files (a second of a tone
//! each, so every player and `ffprobe` accepts them) with real ID3v2 tags written by
//! lofty, covering the layout's cases: albums, a multi-disc album, a compilation, a
//! track without a number, a cover image.

use std::io::Write;
use std::path::Path;

use lofty::config::WriteOptions;
use lofty::prelude::{Accessor, ItemKey, TagExt};
use lofty::tag::{Tag, TagType};

struct Sample {
    file: &'static str,
    title: &'static str,
    artist: &'static str,
    album: &'static str,
    album_artist: Option<&'static str>,
    track: Option<u32>,
    disc: Option<(u32, u32)>,
    compilation: bool,
    hz: f32,
}

const SAMPLES: &[Sample] = &[
    Sample {
        file: "aurora/first light.wav",
        title: "First Light",
        artist: "Aurora Lines",
        album: "Polar Hours",
        album_artist: None,
        track: Some(1),
        disc: None,
        compilation: false,
        hz: 440.0,
    },
    Sample {
        file: "aurora/long night.wav",
        title: "Long Night",
        artist: "Aurora Lines",
        album: "Polar Hours",
        album_artist: None,
        track: Some(2),
        disc: None,
        compilation: false,
        hz: 494.0,
    },
    Sample {
        file: "aurora/interlude.wav",
        title: "Interlude",
        artist: "Aurora Lines",
        album: "Polar Hours",
        album_artist: None,
        track: None,
        disc: None,
        compilation: false,
        hz: 523.0,
    },
    Sample {
        file: "tidal/d1t1.wav",
        title: "Ebb",
        artist: "Tidal Choir",
        album: "Both Tides",
        album_artist: Some("The Tidal Choir"),
        track: Some(1),
        disc: Some((1, 2)),
        compilation: false,
        hz: 587.0,
    },
    Sample {
        file: "tidal/d2t1.wav",
        title: "Flow",
        artist: "Tidal Choir",
        album: "Both Tides",
        album_artist: Some("The Tidal Choir"),
        track: Some(1),
        disc: Some((2, 2)),
        compilation: false,
        hz: 659.0,
    },
    Sample {
        file: "mix/a.wav",
        title: "Night Bus",
        artist: "Ferry Nine",
        album: "City Sampler",
        album_artist: None,
        track: Some(1),
        disc: None,
        compilation: true,
        hz: 698.0,
    },
    Sample {
        file: "mix/b.wav",
        title: "Rooftops",
        artist: "Glass Harbour",
        album: "City Sampler",
        album_artist: None,
        track: Some(2),
        disc: None,
        compilation: true,
        hz: 784.0,
    },
];

/// A one-pixel PNG, as an album cover.
const COVER_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

const RATE: u32 = 22_050;

/// One second of a sine tone as 16-bit mono PCM WAV.
fn wav(hz: f32) -> Vec<u8> {
    let samples: Vec<i16> = (0..RATE)
        .map(|i| ((i as f32 * hz * std::f32::consts::TAU / RATE as f32).sin() * 8000.0) as i16)
        .collect();
    let data_len = samples.len() as u32 * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Writes the sample library into `dir` (unless it is already there).
pub fn ensure(dir: &Path) -> std::io::Result<()> {
    let marker = dir.join(".complete");
    if marker.exists() {
        return Ok(());
    }
    for sample in SAMPLES {
        let path = dir.join(sample.file);
        std::fs::create_dir_all(path.parent().expect("sample paths have a folder"))?;
        std::fs::File::create(&path)?.write_all(&wav(sample.hz))?;
        let mut tag = Tag::new(TagType::Id3v2);
        tag.set_title(sample.title.into());
        tag.set_artist(sample.artist.into());
        tag.set_album(sample.album.into());
        if let Some(album_artist) = sample.album_artist {
            tag.insert_text(ItemKey::AlbumArtist, album_artist.into());
        }
        if let Some(track) = sample.track {
            tag.set_track(track);
        }
        if let Some((disc, total)) = sample.disc {
            tag.set_disk(disc);
            tag.set_disk_total(total);
        }
        if sample.compilation {
            tag.insert_text(ItemKey::FlagCompilation, "1".into());
        }
        tag.save_to_path(&path, WriteOptions::default())
            .map_err(std::io::Error::other)?;
    }
    std::fs::write(dir.join("aurora/cover.png"), COVER_PNG)?;
    std::fs::write(&marker, b"")?;
    Ok(())
}
