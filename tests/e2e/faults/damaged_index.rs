//! A damaged `index.redb` (issue 9, case 3). Before the fix a truncated index
//! refused to start and flipped or zeroed pages panicked inside redb (exit 101).
//! The index only caches what the origins hold: now it is moved aside, an empty
//! one takes its place, the library is rescanned and the mount serves.

use std::path::Path;

use musicfs_tests::mounted::Mounted;

use super::track;

/// Makes damaged bytes of an index file.
type Damage = fn(&[u8]) -> Vec<u8>;

/// Ways to damage the file.
const DAMAGE: &[(&str, Damage)] = &[
    ("truncated to half", |b| b[..b.len() / 2].to_vec()),
    ("super header flipped", |b| flip(b, 0, 512)),
    ("every page flipped", |b| flip(b, 4096, b.len())),
    ("pages zeroed", |b| {
        let mut b = b.to_vec();
        let len = b.len();
        b[4096..len].fill(0);
        b
    }),
];

fn flip(bytes: &[u8], from: usize, to: usize) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for b in &mut bytes[from..to] {
        *b = !*b;
    }
    bytes
}

fn damaged_copies(cache: &Path) -> usize {
    std::fs::read_dir(cache)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("index.redb.damaged-")
        })
        .count()
}

#[test]
fn a_damaged_index_is_moved_aside_and_rebuilt() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    for i in 0..3 {
        track(
            &source.join(format!("t{i}.flac")),
            "Damage",
            "Control",
            i + 1,
            &format!("T {i}"),
        );
    }
    let shown = "Damage/Control/03 - T 2.flac";
    let args = [
        "--origin".to_string(),
        format!("local:{}", source.display()),
    ];
    let cache = work.path().join("cache");
    Mounted::start(work.path(), &cache, &args, Some(shown)).stop();
    let pristine = std::fs::read(cache.join("index.redb")).unwrap();

    for (n, (what, damage)) in DAMAGE.iter().enumerate() {
        std::fs::write(cache.join("index.redb"), damage(&pristine)).unwrap();
        let mount = Mounted::start(work.path(), &cache, &args, Some(shown));
        assert_eq!(
            std::fs::read(mount.path(shown)).unwrap(),
            std::fs::read(source.join("t2.flac")).unwrap(),
            "{what}"
        );
        let log = mount.stop();
        assert!(
            log.contains("is damaged") && log.contains("moved it to"),
            "{what}: not reported as damaged:\n{log}"
        );
        assert_eq!(damaged_copies(&cache), n + 1, "{what}: moved aside, kept");
    }
}
