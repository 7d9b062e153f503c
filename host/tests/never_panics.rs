//! Bad input never panics: property tests over mutated configs, layout
//! templates and tags, manifest records from a damaged store, and tag headers
//! of real audio files with random damage. A bounded number of cases runs in
//! `cargo test` (`PROPTEST_CASES` raises it for a longer hunt).

use std::io::Cursor;
use std::path::Path;

use musicfs::cache::manifest::Manifest;
use musicfs::config::Config;
use musicfs::library::layout::{Layout, NAME_MAX};
use musicfs::library::tag_reader::{read_tags, Tags, PARSER_PANICKED};
use proptest::prelude::*;

/// The README's configuration example (kept parsing by a test of its own), the
/// seed every mutated config starts from.
fn example() -> &'static str {
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("## Configuration")
        .expect("a Configuration section")..];
    let start = section.find("```toml\n").expect("a toml example") + "```toml\n".len();
    &section[start..start + section[start..].find("```").expect("a closed example")]
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256),
        ..ProptestConfig::default()
    }
}

/// An edit of a text or byte string: at a position, delete some bytes and put
/// others in their place.
fn edits() -> impl Strategy<Value = Vec<(usize, usize, Vec<u8>)>> {
    prop::collection::vec(
        (
            any::<usize>(),
            0usize..8,
            prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    Just(b'"'),
                    Just(b'['),
                    Just(b']'),
                    Just(b'='),
                    Just(b'\n'),
                    Just(b'{'),
                    Just(b'}')
                ],
                0..8,
            ),
        ),
        1..6,
    )
}

fn apply(bytes: &[u8], edits: &[(usize, usize, Vec<u8>)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (at, delete, insert) in edits {
        let at = at % (out.len() + 1);
        let end = (at + delete).min(out.len());
        out.splice(at..end, insert.iter().copied());
    }
    out
}

fn tags() -> impl Strategy<Value = Tags> {
    let text = || prop::option::of(any::<String>());
    (
        text(),
        text(),
        text(),
        text(),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        any::<bool>(),
    )
        .prop_map(
            |(title, artist, album_artist, album, track, disc, disc_total, compilation)| Tags {
                title,
                artist,
                album_artist,
                album,
                track,
                disc,
                disc_total,
                compilation,
            },
        )
}

/// Real audio files to damage: the sample library's WAV, and what ffmpeg makes
/// of it when ffmpeg is here (the end-to-end tests need it anyway).
fn seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        musicfs::library::sample::ensure(dir.path()).unwrap();
        let wav = walk(dir.path())
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "wav"))
            .expect("the sample library has a WAV");
        let mut seeds = vec![("wav".to_owned(), std::fs::read(&wav).unwrap())];
        for ext in ["flac", "mp3", "ogg", "opus", "m4a"] {
            let out = dir.path().join(format!("seed.{ext}"));
            let made = std::process::Command::new("ffmpeg")
                .args(["-loglevel", "error", "-y", "-t", "0.5", "-i"])
                .arg(&wav)
                .args(["-metadata", "title=Seed", "-metadata", "artist=Fuzz"])
                .arg(&out)
                .status()
                .is_ok_and(|s| s.success());
            if made {
                seeds.push((ext.to_owned(), std::fs::read(&out).unwrap()));
            }
        }
        seeds
    })
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn a_mutated_config_parses_or_says_where(edits in edits()) {
        let text = String::from_utf8_lossy(&apply(example().as_bytes(), &edits)).into_owned();
        if let Err(e) = Config::parse(Path::new("musicfs.toml"), &text) {
            let shown = e.to_string();
            prop_assert!(shown.starts_with("musicfs.toml"), "{}", shown);
        }
    }

    #[test]
    fn any_template_parses_or_fails_and_every_rendered_name_is_safe(
        template in "[{}\\[\\]/a-z -]{0,40}",
        tags in tags(),
        file_name in any::<String>(),
    ) {
        if let Ok(layout) = Layout::parse(&template) {
            for name in layout.render(&tags, &file_name) {
                prop_assert!(!name.is_empty() && name != "." && name != "..", "{:?}", name);
                prop_assert!(!name.contains('/') && !name.chars().any(char::is_control), "{:?}", name);
                prop_assert!(name.len() <= NAME_MAX, "{} bytes", name.len());
            }
        }
    }

    #[test]
    fn any_manifest_record_decodes_and_plans_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..(44 * 8)),
        start in any::<u64>(),
        len in any::<u32>(),
        size in any::<u64>(),
    ) {
        if let Some(manifest) = Manifest::decode(&bytes) {
            let end = start.saturating_add(len as u64);
            let _ = manifest.plan(start, end);
            let _ = manifest.first_missing(start, end);
            let _ = manifest.missing_until(start, end);
            prop_assert!(manifest.cached_bytes(size) <= size);
            prop_assert_eq!(Manifest::decode(&manifest.encode()), Some(manifest));
        }
    }

    #[test]
    fn damaged_tag_headers_give_tags_or_a_problem(
        seed in any::<prop::sample::Index>(),
        edits in edits(),
        cut in any::<prop::sample::Index>(),
    ) {
        let seeds = seeds();
        let (_, bytes) = &seeds[seed.index(seeds.len())];
        // Damage the head, where the tags are, then maybe cut the file short.
        let head = bytes.len().min(64 * 1024);
        let mut damaged = apply(&bytes[..head], &edits);
        damaged.extend_from_slice(&bytes[head..]);
        damaged.truncate(cut.index(damaged.len() + 1));
        // read_tags contains a panic of lofty's, for the scan's sake; this says
        // whether lofty itself ever needed that.
        let read = read_tags(Cursor::new(damaged));
        prop_assert_ne!(read, Err(PARSER_PANICKED.to_owned()));
    }
}

#[test]
fn the_seeds_are_real_tagged_audio() {
    for (ext, bytes) in seeds() {
        let tags = read_tags(Cursor::new(bytes.clone())).unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert!(tags.title.is_some(), "{ext}: {tags:?}");
    }
}
