//! One behaviour suite, every origin kind: federation, watching, offline and bad
//! input, run through each kind's fixture (`musicfs_tests::origin_kinds`) against
//! the built plugin and a real mount. A new plugin inherits the suite with one
//! `behaviour_suite!` line.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use musicfs_tests::audio_library::{ffmpeg, files_below};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::origin_kinds::{
    LocalFolder, NfsExport, OriginFixture, S3Bucket, SftpServer, SmbShare,
};
use musicfs_tests::s3_server::origins_config;

/// Real tracks, made once per test binary: short tones (cached whole by a read)
/// and longer noise (whose body the scan leaves uncached).
struct Tracks {
    tones: Vec<Vec<u8>>,
    noises: Vec<Vec<u8>>,
    _dir: tempfile::TempDir,
}

fn tracks() -> &'static Tracks {
    static TRACKS: OnceLock<Tracks> = OnceLock::new();
    TRACKS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let make = |kind: &str, source: String, i: usize| {
            let out = dir.path().join(format!("{kind}{i}.flac"));
            let title = format!("{kind} {i}");
            let tags = [
                ("title", title.as_str()),
                ("artist", "Suite"),
                ("album", "Behaviour"),
            ];
            ffmpeg(&source, &tags, &[], &out);
            std::fs::read(out).unwrap()
        };
        Tracks {
            tones: (0..3)
                .map(|i| {
                    make(
                        "Tone",
                        format!("sine=frequency={}:duration=1", 300 + 100 * i),
                        i,
                    )
                })
                .collect(),
            noises: (0..4)
                .map(|i| make("Noise", format!("anoisesrc=duration=8:seed={i}"), i))
                .collect(),
            _dir: dir,
        }
    })
}

fn tone(i: usize) -> (String, String) {
    (
        format!("tone{i}.flac"),
        format!("Suite/Behaviour/Tone {i}.flac"),
    )
}

fn noise(i: usize) -> (String, String) {
    (
        format!("noise{i}.flac"),
        format!("Suite/Behaviour/Noise {i}.flac"),
    )
}

/// Mounts `origins` (whose plugins are installed) with quick health checks.
fn mount(
    work: &Path,
    fixtures: &[&dyn OriginFixture],
    origins: Vec<toml::Table>,
    ready: &str,
) -> Mounted {
    for fixture in fixtures {
        musicfs_tests::install_plugin(&work.join("plugins"), fixture.plugin());
    }
    let mut config = origins_config(origins);
    let mut health = toml::Table::new();
    health.insert("check_interval_secs".into(), 1i64.into());
    health.insert("timeout_ms".into(), 2000i64.into());
    config.insert("health".into(), health.into());
    let file = work.join("musicfs.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    let args = ["--config".to_string(), file.display().to_string()];
    Mounted::start(work, &work.join("cache"), &args, Some(ready))
}

/// Reads in the middle of a file: bytes its scan did not cache.
fn read_middle(path: &Path, original: &[u8]) -> std::io::Result<bool> {
    let at = original.len() / 2;
    let mut buf = vec![0u8; 4096];
    let file = std::fs::File::open(path)?;
    file.read_exact_at(&mut buf, at as u64)?;
    Ok(buf == original[at..at + 4096])
}

/// Two origins of the kind with the same tracks: reads move to the second when
/// the first goes away, and back when it returns and the second goes.
fn federation<K: OriginFixture>() {
    let work = tempfile::tempdir().unwrap();
    let mut first = K::start(work.path(), "first");
    let mut second = K::start(work.path(), "second");
    for (i, bytes) in tracks().noises.iter().enumerate() {
        first.put(&noise(i).0, bytes);
        second.put(&noise(i).0, bytes);
    }
    let origins = vec![first.origin("first", 1), second.origin("second", 2)];
    let mount = mount(work.path(), &[&first, &second], origins, &noise(3).1);
    let noises = &tracks().noises;
    assert_eq!(std::fs::read(mount.path(&noise(0).1)).unwrap(), noises[0]);

    first.go_away();
    assert_eq!(std::fs::read(mount.path(&noise(1).1)).unwrap(), noises[1]);
    assert!(read_middle(&mount.path(&noise(2).1), &noises[2]).unwrap());

    first.come_back();
    second.go_away();
    mount.wait_until(Duration::from_secs(30), |m| {
        read_middle(&m.path(&noise(3).1), &noises[3]).unwrap_or(false)
    });
    assert_eq!(std::fs::read(mount.path(&noise(3).1)).unwrap(), noises[3]);
    assert!(mount.alive());
}

/// A track put on the origin shows up; one taken away goes.
fn watching<K: OriginFixture>() {
    let work = tempfile::tempdir().unwrap();
    let origin = K::start(work.path(), "watched");
    let tones = &tracks().tones;
    origin.put(&tone(0).0, &tones[0]);
    let mount = mount(
        work.path(),
        &[&origin],
        vec![origin.origin("watched", 1)],
        &tone(0).1,
    );

    origin.put(&tone(1).0, &tones[1]);
    mount.wait_until(Duration::from_secs(30), |m| m.path(&tone(1).1).exists());
    assert_eq!(std::fs::read(mount.path(&tone(1).1)).unwrap(), tones[1]);

    origin.remove(&tone(0).0);
    mount.wait_until(Duration::from_secs(30), |m| !m.path(&tone(0).1).exists());
    assert!(mount.path(&tone(1).1).exists());
}

/// The origin goes away: nothing leaves the tree, cached tracks play, uncached
/// bytes fail with EIO, across a restart; it comes back and everything reads.
fn offline<K: OriginFixture>() {
    let work = tempfile::tempdir().unwrap();
    let mut origin = K::start(work.path(), "away");
    let (tones, noises) = (&tracks().tones, &tracks().noises);
    origin.put(&tone(0).0, &tones[0]);
    origin.put(&noise(0).0, &noises[0]);
    let origins = vec![origin.origin("away", 1)];
    let mount_it = || mount(work.path(), &[&origin], origins.clone(), &noise(0).1);
    let mounted = mount_it();
    assert_eq!(std::fs::read(mounted.path(&tone(0).1)).unwrap(), tones[0]);

    origin.go_away();
    let check_offline = |m: &Mounted| {
        assert_eq!(std::fs::read(m.path(&tone(0).1)).unwrap(), tones[0]);
        let err = read_middle(&m.path(&noise(0).1), &noises[0]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        assert_eq!(files_below(&m.mountpoint).len(), 2);
    };
    check_offline(&mounted);
    mounted.stop();
    let origins = vec![origin.origin("away", 1)];
    let mounted = mount(work.path(), &[&origin], origins, &noise(0).1);
    // The restart's scan finds the origin unreachable and keeps the index.
    mounted.wait_until(Duration::from_secs(30), |m| {
        m.log().contains("scan finished")
    });
    check_offline(&mounted);

    origin.come_back();
    mounted.wait_until(Duration::from_secs(30), |m| {
        read_middle(&m.path(&noise(0).1), &noises[0]).unwrap_or(false)
    });
    assert_eq!(std::fs::read(mounted.path(&noise(0).1)).unwrap(), noises[0]);
    // Back, it is watched again (it was down when its watch was first started).
    origin.put(&tone(1).0, &tones[1]);
    mounted.wait_until(Duration::from_secs(30), |m| m.path(&tone(1).1).exists());
}

/// Bad files beside a good one: the good one shows with its tags, the bad ones
/// under fallback names, reported, and the mount carries on.
fn bad_input<K: OriginFixture>() {
    let work = tempfile::tempdir().unwrap();
    let origin = K::start(work.path(), "bad");
    let tones = &tracks().tones;
    origin.put(&tone(0).0, &tones[0]);
    let corrupt: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    origin.put("corrupt.flac", &corrupt);
    origin.put("truncated.flac", &tones[1][..60]);
    origin.put("empty.ogg", b"");
    let mount = mount(
        work.path(),
        &[&origin],
        vec![origin.origin("bad", 1)],
        &tone(0).1,
    );
    mount.wait_until(Duration::from_secs(30), |m| {
        m.log().contains("scan finished")
    });

    let files = files_below(&mount.mountpoint);
    for bad in ["corrupt.flac", "truncated.flac", "empty.ogg"] {
        assert!(
            files.contains(&format!("Unknown Artist/Unknown Album/{bad}")),
            "{bad}: {files:?}"
        );
    }
    assert_eq!(std::fs::read(mount.path(&tone(0).1)).unwrap(), tones[0]);
    assert_eq!(
        std::fs::read(mount.path("Unknown Artist/Unknown Album/corrupt.flac")).unwrap(),
        corrupt
    );
    let log = mount.stop();
    assert!(log.contains("corrupt.flac"), "not reported:\n{log}");
}

macro_rules! behaviour_suite {
    ($kind:ident, $fixture:ty) => {
        mod $kind {
            #[test]
            fn federation() {
                super::federation::<$fixture>();
            }

            #[test]
            fn watching() {
                super::watching::<$fixture>();
            }

            #[test]
            fn offline() {
                super::offline::<$fixture>();
            }

            #[test]
            fn bad_input() {
                super::bad_input::<$fixture>();
            }
        }
    };
}

behaviour_suite!(local, super::LocalFolder);
behaviour_suite!(s3, super::S3Bucket);
behaviour_suite!(sftp, super::SftpServer);
behaviour_suite!(nfs, super::NfsExport);
behaviour_suite!(smb, super::SmbShare);
