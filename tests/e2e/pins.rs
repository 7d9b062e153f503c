//! `musicfs pin`: an album larger than the cache's limit is pinned, plays with
//! its origin gone (across a restart too), takes in a track added later, and
//! is let go by `unpin`; a playlist pins its entries; a pin that does not fit
//! on the cache's disk is refused with the sizes.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use musicfs_tests::audio_library::ffmpeg;
use musicfs_tests::mounted::Mounted;
use musicfs_tests::origin_kinds::{LocalFolder, OriginFixture};
use musicfs_tests::{musicfs_binary, status_of, xattr};

/// Generous: a hang detector, not a speed bound.
const PATIENCE: Duration = Duration::from_secs(120);

/// `seconds` of noise (about 150 KB of FLAC a second) tagged into `album`.
fn noise_track(dir: &Path, album: &str, n: usize, seconds: u32) -> Vec<u8> {
    let out = dir.join(format!("{album}-{n}.flac"));
    let title = format!("Part {n}");
    let track = n.to_string();
    let tags = [
        ("title", title.as_str()),
        ("artist", "Hiss"),
        ("album", album),
        ("track", track.as_str()),
    ];
    ffmpeg(
        &format!("anoisesrc=duration={seconds}:seed={n}"),
        &tags,
        &[],
        &out,
    );
    std::fs::read(out).unwrap()
}

fn shown(album: &str, n: usize) -> String {
    format!("Hiss/{album}/{n:02} - Part {n}.flac")
}

fn musicfs(args: &[&str]) -> Output {
    Command::new(musicfs_binary()).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The file read past the kernel's page cache (O_DIRECT): the daemon serves it.
fn read_direct(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn pins_json(mount: &Mounted) -> serde_json::Value {
    let out = musicfs(&[
        "pins",
        "--json",
        "--mount",
        &mount.mountpoint.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_pinned_album_larger_than_the_cache_plays_with_its_origin_gone() {
    let work = tempfile::tempdir().unwrap();
    let made = work.path().join("made");
    let mut origin = LocalFolder::start(work.path(), "disk");
    // Kept: four tracks, about 4.8 MB, against a 1 MB cache. Other: two
    // short ones.
    let kept: Vec<Vec<u8>> = (1..=4).map(|n| noise_track(&made, "Kept", n, 8)).collect();
    let other: Vec<Vec<u8>> = (1..=2).map(|n| noise_track(&made, "Other", n, 2)).collect();
    for (n, bytes) in kept.iter().enumerate() {
        origin.put(&format!("kept/{}.flac", n + 1), bytes);
    }
    for (n, bytes) in other.iter().enumerate() {
        origin.put(&format!("other/{}.flac", n + 1), bytes);
    }
    let album: u64 = kept.iter().map(|k| k.len() as u64).sum();
    assert!(album > 4_000_000, "{album}");
    let mut config = musicfs_tests::s3_server::origins_config(vec![origin.origin("disk", 1)]);
    // No whole copies: the cache's bytes are its chunks alone.
    let settings: toml::Table =
        toml::from_str("[cache]\ncontent_cache_gb = 0.001\npassthrough = false\n").unwrap();
    config.extend(settings);
    let file = work.path().join("musicfs.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    let args = ["--config".to_owned(), file.display().to_string()];
    let cache = work.path().join("cache");
    let mount = Mounted::start(work.path(), &cache, &args, Some(&shown("Other", 2)));
    let mnt = mount.mountpoint.display().to_string();

    // Pin the album: every byte fetched, the command says so.
    let album_dir = mount.path("Hiss/Kept");
    assert_eq!(
        xattr(&album_dir, "user.musicfs.pinned").as_deref(),
        Some("no")
    );
    let out = musicfs(&["pin", &album_dir.display().to_string()]);
    assert!(out.status.success(), "{}\n{}", text(&out), mount.log());
    assert!(
        text(&out).contains("pinned Hiss/Kept: 4 files"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("all cached"), "{}", text(&out));
    for n in 1..=4 {
        let track = mount.path(&shown("Kept", n));
        assert_eq!(xattr(&track, "user.musicfs.cached").as_deref(), Some("yes"));
        assert_eq!(xattr(&track, "user.musicfs.pinned").as_deref(), Some("yes"));
    }
    assert_eq!(
        xattr(&album_dir, "user.musicfs.pinned").as_deref(),
        Some("yes")
    );
    assert_eq!(
        xattr(&mount.path(&shown("Other", 1)), "user.musicfs.pinned").as_deref(),
        Some("no")
    );

    // Playing the other album (evicting what it can) leaves the pin whole, and
    // the limit holds for the rest.
    for (n, bytes) in other.iter().enumerate() {
        assert_eq!(
            &read_direct(&mount.path(&shown("Other", n + 1))).unwrap(),
            bytes
        );
    }
    let now = status_of(&mount.mountpoint);
    assert!(now.cache.pinned_bytes >= album, "{:?}", now.cache);
    assert!(
        now.cache.bytes - now.cache.pinned_bytes <= now.cache.limit,
        "{:?}",
        now.cache
    );
    let pins = pins_json(&mount);
    assert_eq!(pins[0]["path"], "Hiss/Kept");
    assert_eq!(pins[0]["files"], 4);
    assert_eq!(pins[0]["bytes"], album);
    assert_eq!(pins[0]["cached_bytes"], album);

    // The origin goes: the pinned album plays, a restart changes nothing.
    origin.go_away();
    for (n, bytes) in kept.iter().enumerate() {
        assert_eq!(
            &read_direct(&mount.path(&shown("Kept", n + 1))).unwrap(),
            bytes
        );
    }
    mount.stop();
    let mount = Mounted::start(work.path(), &cache, &args, Some(&shown("Kept", 4)));
    for (n, bytes) in kept.iter().enumerate() {
        assert_eq!(
            &read_direct(&mount.path(&shown("Kept", n + 1))).unwrap(),
            bytes
        );
    }
    assert_eq!(pins_json(&mount)[0]["path"], "Hiss/Kept");

    // Back, with a fifth track in the pinned folder: it is fetched unasked.
    origin.come_back();
    let fifth = noise_track(&made, "Kept", 5, 8);
    origin.put("kept/5.flac", &fifth);
    let fifth_shown = mount.path(&shown("Kept", 5));
    mount.wait_until(PATIENCE, |_| {
        xattr(&fifth_shown, "user.musicfs.cached").as_deref() == Some("yes")
    });
    assert_eq!(
        xattr(&fifth_shown, "user.musicfs.pinned").as_deref(),
        Some("yes")
    );

    // A playlist pins its entries, each on its own: one absolute, one
    // relative to the mount's root (as MPD writes them).
    let playlist = work.path().join("Mix.m3u8");
    std::fs::write(
        &playlist,
        format!(
            "#EXTM3U\n#EXTINF:8,Hiss - Part 2\n{}\n{}\n",
            mount.path(&shown("Other", 2)).display(),
            shown("Other", 1),
        ),
    )
    .unwrap();
    let out = musicfs(&["pin", "--mount", &mnt, &playlist.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let paths: Vec<String> = pins_json(&mount)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "Hiss/Kept",
            shown("Other", 1).as_str(),
            shown("Other", 2).as_str()
        ]
    );

    // Unpinning a track of the pinned album names the album; unpinning the
    // album lets it go.
    let out = musicfs(&[
        "unpin",
        &mount.path(&shown("Kept", 1)).display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("pinned through Hiss/Kept"),
        "{}",
        text(&out)
    );
    let out = musicfs(&["unpin", &album_dir.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        xattr(&album_dir, "user.musicfs.pinned").as_deref(),
        Some("no")
    );
    mount.wait_until(PATIENCE, |m| {
        status_of(&m.mountpoint).cache.pinned_bytes < album
    });
    let out = musicfs(&["pins", "--mount", &mnt]);
    assert!(!text(&out).contains("Hiss/Kept"), "{}", text(&out));
    assert!(text(&out).contains(&shown("Other", 2)), "{}", text(&out));
}

#[test]
fn a_pin_that_does_not_fit_on_the_disk_is_refused_with_the_sizes() {
    // SAFETY: geteuid cannot fail.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "a small disk for the cache (tmpfs) needs root: run the tests as root, as CI does"
    );
    let work = tempfile::tempdir().unwrap();
    let origin = LocalFolder::start(work.path(), "disk");
    let made = work.path().join("made");
    // A small album (1.2 MB) and a big one (4 x 75 s, about 45 MB).
    origin.put("small/1.flac", &noise_track(&made, "Small", 1, 8));
    for n in 1..=4 {
        origin.put(&format!("big/{n}.flac"), &noise_track(&made, "Big", n, 75));
    }
    // The cache's disk: room for the plugin (copied there) and 40 MB.
    let plugin = std::fs::metadata(musicfs_tests::local_plugin())
        .unwrap()
        .len();
    let cache = work.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let size = format!("size={}", plugin + (40 << 20));
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
        .arg(&cache)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&cache);
    let args = [
        "--origin".to_owned(),
        format!("local:{}", work.path().join("disk").display()),
    ];
    let mount = Mounted::start(work.path(), &cache, &args, Some(&shown("Big", 4)));
    let out = musicfs(&["pin", &mount.path("Hiss/Small").display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = musicfs(&["pin", &mount.path("Hiss/Big").display().to_string()]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("cannot pin Hiss/Big: the pins need"),
        "{said}"
    );
    assert!(said.contains("MB free"), "{said}");
    let pins = pins_json(&mount);
    assert_eq!(pins.as_array().unwrap().len(), 1, "{pins}");
    assert_eq!(pins[0]["path"], "Hiss/Small");

    // A long track added to the pinned album later is not fetched: it would
    // leave too little free. It is named, and the rest stays.
    origin.put("small/2.flac", &noise_track(&made, "Small", 2, 300));
    mount.wait_until(PATIENCE, |m| {
        m.log().contains("no room on the cache's disk")
    });
    let pins = pins_json(&mount);
    assert_eq!(pins[0]["files"], 2, "{pins}");
    assert!(
        pins[0]["cached_bytes"].as_u64() < pins[0]["bytes"].as_u64(),
        "{pins}"
    );
    assert_eq!(
        xattr(&mount.path(&shown("Small", 1)), "user.musicfs.cached").as_deref(),
        Some("yes")
    );
    drop(mount);
}
