//! Real audio files with real tags, made by ffmpeg, for the mount tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One generated track: where it is in the source folder, its tags, and where the
/// default layout must show it.
pub struct Track {
    pub source: &'static str,
    pub tags: &'static [(&'static str, &'static str)],
    pub shown_as: &'static str,
}

/// The tracks, one per rule of the layout (and one per format).
pub const TRACKS: &[Track] = &[
    Track {
        source: "a/one.flac",
        tags: &[
            ("title", "One"),
            ("artist", "Solo"),
            ("album", "Numbers"),
            ("track", "1"),
        ],
        shown_as: "Solo/Numbers/01 - One.flac",
    },
    Track {
        source: "a/two.mp3",
        tags: &[
            ("title", "Two"),
            ("artist", "Solo"),
            ("album", "Numbers"),
            ("track", "2/9"),
        ],
        shown_as: "Solo/Numbers/02 - Two.mp3",
    },
    Track {
        source: "a/three.ogg",
        tags: &[
            ("title", "Three"),
            ("artist", "Solo"),
            ("album", "Numbers"),
            ("track", "3"),
        ],
        shown_as: "Solo/Numbers/03 - Three.ogg",
    },
    Track {
        source: "a/four.opus",
        tags: &[
            ("title", "Four"),
            ("artist", "Solo"),
            ("album", "Numbers"),
            ("track", "4"),
        ],
        shown_as: "Solo/Numbers/04 - Four.opus",
    },
    Track {
        source: "a/five.m4a",
        tags: &[
            ("title", "Five"),
            ("artist", "Solo"),
            ("album", "Numbers"),
            ("track", "5"),
        ],
        shown_as: "Solo/Numbers/05 - Five.m4a",
    },
    Track {
        source: "a/six.aiff",
        tags: &[
            ("title", "Six"),
            ("artist", "Solo"),
            ("album", "Numbers"),
            ("track", "6"),
        ],
        shown_as: "Solo/Numbers/06 - Six.aiff",
    },
    Track {
        source: "b/untitled take.flac",
        tags: &[("artist", "Solo"), ("album", "Numbers")],
        shown_as: "Solo/Numbers/untitled take.flac",
    },
    Track {
        source: "c/d1.flac",
        tags: &[
            ("title", "Side A"),
            ("artist", "Duo"),
            ("album_artist", "The Duo"),
            ("album", "Double"),
            ("track", "1"),
            ("disc", "1/2"),
        ],
        shown_as: "The Duo/Double/1-01 - Side A.flac",
    },
    Track {
        source: "c/d2.flac",
        tags: &[
            ("title", "Side B"),
            ("artist", "Duo"),
            ("album_artist", "The Duo"),
            ("album", "Double"),
            ("track", "1"),
            ("disc", "2/2"),
        ],
        shown_as: "The Duo/Double/2-01 - Side B.flac",
    },
    Track {
        source: "d/x.flac",
        tags: &[
            ("title", "Hit"),
            ("artist", "Someone"),
            ("album", "Hits"),
            ("track", "1"),
            ("compilation", "1"),
        ],
        shown_as: "Various Artists/Hits/01 - Hit.flac",
    },
    Track {
        source: "e/raw.flac",
        tags: &[],
        shown_as: "Unknown Artist/Unknown Album/raw.flac",
    },
    Track {
        source: "f/slash.flac",
        tags: &[
            ("title", "Either/Or"),
            ("artist", "AC/DC"),
            ("album", "Volts"),
        ],
        shown_as: "AC_DC/Volts/Either_Or.flac",
    },
    Track {
        source: "g/same.flac",
        tags: &[
            ("title", "Twin"),
            ("artist", "Pair"),
            ("album", "Mirror"),
            ("track", "1"),
        ],
        shown_as: "Pair/Mirror/01 - Twin.flac",
    },
    Track {
        source: "h/same.flac",
        tags: &[
            ("title", "Twin"),
            ("artist", "Pair"),
            ("album", "Mirror"),
            ("track", "1"),
        ],
        shown_as: "Pair/Mirror/01 - Twin (2).flac",
    },
];

/// Makes `out` with ffmpeg from a lavfi `source` (`sine=frequency=440:duration=1`),
/// with `tags` and any `extra` output options; the format follows the extension.
pub fn ffmpeg(source: &str, tags: &[(&str, &str)], extra: &[&str], out: &Path) {
    std::fs::create_dir_all(out.parent().expect("an output file has a folder")).unwrap();
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        source,
    ]);
    cmd.args(extra);
    for (key, value) in tags {
        cmd.arg("-metadata").arg(format!("{key}={value}"));
    }
    let status = cmd
        .arg(out)
        .status()
        .expect("ffmpeg runs (install it: apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg failed to make {}", out.display());
}

/// Writes `count` tracks of `seconds` of noise (about 150 KB of FLAC a
/// second, none alike) into `dir` as `0.flac`, `1.flac`, …, tagged `Noise N`
/// by `Hiss` on `album`: shown as `Hiss/<album>/Noise N.flac`.
pub fn noise_album(dir: &Path, album: &str, count: usize, seconds: u32) {
    for i in 0..count {
        let title = format!("Noise {i}");
        let tags = [
            ("title", title.as_str()),
            ("artist", "Hiss"),
            ("album", album),
        ];
        let source = format!("anoisesrc=duration={seconds}:seed={i}");
        ffmpeg(&source, &tags, &[], &dir.join(format!("{i}.flac")));
    }
}

/// Writes every track into `dir` with ffmpeg: one second of a tone, a different
/// tone per track (so no two files are equal), with the track's tags.
pub fn generate(dir: &Path) {
    for (i, track) in TRACKS.iter().enumerate() {
        let out = dir.join(track.source);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        // AIFF carries full tags in an ID3 chunk (as iTunes and most taggers do).
        let extra: &[&str] = if track.source.ends_with(".aiff") {
            &["-ac", "2", "-write_id3v2", "1"]
        } else {
            &["-ac", "2"]
        };
        let source = format!("sine=frequency={}:duration=1", 300 + 37 * i);
        ffmpeg(&source, track.tags, extra, &out);
    }
    // A cover beside the first album's tracks, and a file that is not audio.
    std::fs::write(
        dir.join("a/cover.jpg"),
        b"\xff\xd8\xff\xe0 not a real jpeg, but named like a cover",
    )
    .unwrap();
    std::fs::write(dir.join("a/notes.txt"), b"liner notes").unwrap();
}

/// Whether ffprobe accepts `path` as audio.
pub fn ffprobe_accepts(path: &Path) -> bool {
    Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("audio"))
        .unwrap_or(false)
}

/// Every regular file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A generated library, made once per test binary; copy it before changing it.
pub fn shared() -> &'static Path {
    static LIBRARY: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            generate(dir.path());
            dir
        })
        .path()
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    for rel in files_below(from) {
        let target = to.join(&rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), target).unwrap();
    }
}
