//! Bad files in a library: the scan reports them and goes on; the mount stays
//! healthy and every name it shows is safe.

use std::path::Path;
use std::process::Command;

use lofty::config::WriteOptions;
use lofty::prelude::{Accessor, TagExt};
use lofty::tag::{Tag, TagType};
use musicfs_tests::audio_library::{ffmpeg, files_below};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::{scan, scan_with};

fn ffmpeg_flac(out: &Path, title: &str) {
    let tags = [("title", title), ("artist", "Edge"), ("album", "Cases")];
    ffmpeg("sine=frequency=500:duration=1", &tags, &[], out);
}

/// Replaces the first occurrence of `from` in the file with `to` (same length).
fn patch(path: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in file");
    bytes[at..at + to.len()].copy_from_slice(to);
    std::fs::write(path, bytes).unwrap();
}

fn bad_library(dir: &Path) {
    ffmpeg_flac(&dir.join("good.flac"), "Fine");
    std::fs::write(
        dir.join("corrupt.flac"),
        (0..50_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    ffmpeg_flac(&dir.join("whole.flac"), "Cut Short");
    let whole = std::fs::read(dir.join("whole.flac")).unwrap();
    std::fs::write(dir.join("truncated.flac"), &whole[..60]).unwrap();
    std::fs::remove_file(dir.join("whole.flac")).unwrap();
    std::fs::write(dir.join("empty.ogg"), b"").unwrap();
    ffmpeg_flac(&dir.join("nul.flac"), "Null_Inside");
    patch(&dir.join("nul.flac"), b"Null_Inside", b"Null\0Inside");
    ffmpeg_flac(&dir.join("latin.flac"), "BadUTF8xx");
    patch(&dir.join("latin.flac"), b"BadUTF8xx", b"BadUTF8\xff\xfe");
    // A 10 MB title, written with lofty (no command line holds it).
    ffmpeg_flac(&dir.join("huge.flac"), "placeholder");
    let mut tag = Tag::new(TagType::VorbisComments);
    tag.set_title("Long".repeat(2_500_000));
    tag.set_artist("Edge".into());
    tag.set_album("Cases".into());
    tag.save_to_path(dir.join("huge.flac"), WriteOptions::default())
        .unwrap();
    std::os::unix::fs::symlink("loop.flac", dir.join("loop.flac")).unwrap();
}

/// [`scan`] as user `nobody`, for whom file modes count (root reads anything).
/// `binary` is a copy of `musicfs` that `nobody` may run: the build folder may lie
/// below one that only root can enter.
fn scan_as_nobody(binary: &Path, plugins: &Path, cache: &Path, origin: &str) -> (bool, String) {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary);
    scan_with(command, plugins, cache, origin)
}

/// What [`scan_as_nobody`] needs below `work` to scan `library`: the local
/// plugin, a cache `nobody` owns, and a copy of `musicfs` it may run.
struct AsNobody {
    binary: std::path::PathBuf,
    plugins: std::path::PathBuf,
    cache: std::path::PathBuf,
    origin: String,
}

impl AsNobody {
    fn new(work: &Path, library: &Path) -> AsNobody {
        let plugins = work.join("plugins");
        musicfs_tests::install_plugin(&plugins, "musicfs_local");
        let cache = work.join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
        let binary = work.join("musicfs");
        musicfs_tests::place_musicfs_binary(&binary);
        AsNobody {
            binary,
            plugins,
            cache,
            origin: format!("local:{}", library.display()),
        }
    }

    fn scan(&self) -> (bool, String) {
        scan_as_nobody(&self.binary, &self.plugins, &self.cache, &self.origin)
    }
}

#[test]
fn bad_files_are_reported_and_the_mount_stays_healthy() {
    let source = tempfile::tempdir().unwrap();
    bad_library(source.path());
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let origin = format!("local:{}", source.path().display());

    let plugins = work.path().join("plugins-for-scan");
    // Without the plugin, the origin waits: nothing is scanned, nothing is lost.
    let (_, stdout) = scan(&plugins, &cache, &origin);
    assert!(
        stdout.contains("not scanned") || stdout.contains("0 files"),
        "{stdout}"
    );

    musicfs_tests::install_plugin(&plugins, "musicfs_local");
    let (ok, stdout) = scan(&plugins, &cache, &origin);
    assert!(ok, "{stdout}");
    for bad in ["corrupt.flac", "truncated.flac", "empty.ogg"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("problem: local:") && l.contains(bad)),
            "{bad} not reported:\n{stdout}"
        );
    }
    assert!(stdout.starts_with("7 files"), "{stdout}");

    let mount = Mounted::start(
        work.path(),
        &cache,
        &["--origin".into(), origin],
        Some("Edge/Cases/Fine.flac"),
    );
    let files = files_below(&mount.mountpoint);
    for file in &files {
        let name = file.rsplit('/').next().unwrap();
        assert!(name.len() <= 255, "{} bytes: {name:.40}…", name.len());
        assert!(!name.chars().any(char::is_control), "{name:?}");
    }
    assert!(
        files.contains(&"Edge/Cases/NullInside.flac".to_owned()),
        "{files:#?}"
    );
    assert!(
        files.iter().any(|f| f.starts_with("Edge/Cases/LongLong")),
        "{files:#?}"
    );
    // A title that is not UTF-8 is dropped; the file name stands in, the other tags stay.
    assert!(
        files.contains(&"Edge/Cases/latin.flac".to_owned()),
        "{files:#?}"
    );
    assert!(
        files.contains(&"Unknown Artist/Unknown Album/corrupt.flac".to_owned()),
        "{files:#?}"
    );
    assert!(!files.iter().any(|f| f.contains("loop")), "{files:#?}");
    assert_eq!(
        std::fs::read(mount.path("Edge/Cases/Fine.flac")).unwrap(),
        std::fs::read(source.path().join("good.flac")).unwrap()
    );
    assert_eq!(
        std::fs::read(mount.path("Unknown Artist/Unknown Album/empty.ogg")).unwrap(),
        b""
    );
}

/// A file the daemon may not read is a problem of that file: reported, skipped,
/// and the origin stays healthy for the others.
#[test]
fn an_unreadable_file_is_reported_and_the_rest_is_scanned() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    // `nobody` must reach everything but the one unreadable file.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let library = dir.path().join("library");
    std::fs::create_dir_all(&library).unwrap();
    ffmpeg_flac(&library.join("good.flac"), "Fine");
    ffmpeg_flac(&library.join("secret.flac"), "Hidden");
    std::fs::set_permissions(
        library.join("secret.flac"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let (ok, printed) = AsNobody::new(dir.path(), &library).scan();
    assert!(ok, "{printed}");
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("problem: local:secret.flac") && l.contains("ermission denied")),
        "secret.flac not reported:\n{printed}"
    );
    assert!(printed.contains("2 tracks in the library"), "{printed}");
    assert!(
        !printed.contains("Unhealthy"),
        "one unreadable file marked the origin unhealthy:\n{printed}"
    );
}

/// A scan writes its records as it goes (`scanner::WRITE_EVERY` at a time),
/// not all at the end: a library of more than two writes' worth keeps every
/// file, and a rescan drops exactly the files that went, while an album
/// folder that cannot be listed keeps its tracks (unreachable is not deleted).
#[test]
fn a_scan_written_as_it_goes_keeps_every_file_and_drops_only_what_went() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let library = dir.path().join("library");
    let tracks = 2 * musicfs::library::scanner::WRITE_EVERY + 500;
    musicfs_tests::bench_support::tagged_library(&library, tracks);
    let nobody = AsNobody::new(dir.path(), &library);

    let (ok, printed) = nobody.scan();
    assert!(ok, "{printed}");
    assert!(
        printed.contains(&format!("{tracks} tracks in the library")),
        "{printed}"
    );

    // Five tracks go; an album of twenty cannot be listed any more.
    let source = |i: usize| library.join(musicfs_tests::bench_support::tagged_track_source(i));
    for i in [3, 777, 2_001, 2_002, tracks - 1] {
        std::fs::remove_file(source(i)).unwrap();
    }
    let hidden_album = source(40).parent().unwrap().to_owned();
    std::fs::set_permissions(&hidden_album, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (ok, printed) = nobody.scan();
    std::fs::set_permissions(&hidden_album, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(ok, "{printed}");
    assert!(
        printed.contains(&format!("{} tracks in the library", tracks - 5)),
        "the five removed went, the unlisted album's twenty stayed:\n{printed}"
    );
}
