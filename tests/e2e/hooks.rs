//! `[[hooks]]`: a new album at the origin reaches the music servers without a
//! rescan. MPD is the real one (Debian's `mpd`, `auto_update "no"`, its
//! `music_directory` the mount). Navidrome, Jellyfin and Plex are not
//! installable here: their hooks talk to a small HTTP server of the test that
//! records each request, checked against each server's documented API.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use musicfs::control::status::Status;
use musicfs_tests::audio_library::{self, copy_tree, ffmpeg, TRACKS};
use musicfs_tests::http_recorder::{HttpRecorder, Request};
use musicfs_tests::mounted::Mounted;
use musicfs_tests::mpd_server::MpdServer;
use musicfs_tests::{local_config, status_of};

/// Generous: a hang detector, not a speed bound.
const PATIENCE: Duration = Duration::from_secs(120);

/// Writes two tracks of a new album `album` by `artist` into `dir`, made in
/// `aside` (on the same file system) and moved in, as a download client or a
/// copy tool finishes.
fn new_album(dir: &Path, aside: &Path, artist: &str, album: &str) {
    for (i, title) in ["Opening", "Closing"].iter().enumerate() {
        let track = (i + 1).to_string();
        let tags = [
            ("title", *title),
            ("artist", artist),
            ("album", album),
            ("track", track.as_str()),
        ];
        let name = format!("{}.flac", i + 1);
        ffmpeg(
            &format!("sine=frequency={}:duration=1", 700 + 50 * i),
            &tags,
            &[],
            &aside.join(&name),
        );
        let target = dir.join(album).join(&name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::rename(aside.join(&name), target).unwrap();
    }
}

#[test]
fn mpd_learns_of_a_new_album_without_a_rescan() {
    let source = tempfile::tempdir().unwrap();
    copy_tree(audio_library::shared(), source.path());
    let work = tempfile::tempdir().unwrap();
    let mountpoint = work.path().join("mnt");
    std::fs::create_dir_all(&mountpoint).unwrap();
    let mpd_dir = work.path().join("mpd");
    // MPD starts after the mount (its music_directory must be mounted): the
    // hook's first runs, for the first scan, may find no one and give up.
    let mpd_port = musicfs_tests::s3_server::free_port();
    let config = local_config(
        work.path(),
        "disk",
        source.path(),
        &format!(
            "[[hooks]]\ntype = \"mpd\"\naddress = \"127.0.0.1:{mpd_port}\"\ndebounce_ms = 300\n"
        ),
    );
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &["--config".into(), config.display().to_string()],
        Some(TRACKS[0].shown_as),
    );
    let mpd = MpdServer::start_on(&mountpoint, &mpd_dir, mpd_port);
    // MPD's own first walk of the mount.
    mount.wait_until(PATIENCE, |_| {
        mpd.files().iter().any(|f| f == TRACKS[0].shown_as) && !mpd.updating()
    });
    assert!(
        !mpd.files().iter().any(|f| f.starts_with("Fresh/")),
        "{:?}",
        mpd.files()
    );

    new_album(source.path(), work.path(), "Fresh", "First Light");
    let wanted = [
        "Fresh/First Light/01 - Opening.flac",
        "Fresh/First Light/02 - Closing.flac",
    ];
    mount.wait_until(PATIENCE, |m| {
        let files = mpd.files();
        let all = wanted.iter().all(|w| files.iter().any(|f| f == w));
        if !all && !m.alive() {
            panic!("the daemon died:\n{}", m.log());
        }
        all
    });
    // It was the hook: with auto_update off, only an update command brings
    // new files into MPD's database.
    let log = mpd.log();
    assert!(log.contains("Fresh/First Light/01 - Opening.flac"), "{log}");
    let hook = &status_of(&mountpoint).hooks[0];
    assert_eq!((hook.name.as_str(), hook.kind.as_str()), ("mpd", "mpd"));
    assert!(hook.runs >= 1, "{hook:?}");
    assert!(
        mount.log().contains("told of the changes"),
        "{}",
        mount.log()
    );
}

const SUBSONIC_OK: &str = r#"{"subsonic-response":{"status":"ok","version":"1.16.1","scanStatus":{"scanning":true,"count":0}}}"#;

/// The MD5 of `text` in hex, by coreutils' `md5sum`.
fn md5_hex(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_owned()
}

#[test]
fn subsonic_jellyfin_plex_and_a_command_are_told_by_their_own_apis() {
    // Plex answers the first request of a batch 503 (the counter is set
    // back before the album under test comes): its hook must try again.
    let plex_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = plex_calls.clone();
    let server = HttpRecorder::start(move |r: &Request| {
        if r.path.starts_with("/navidrome/rest/") || r.path.starts_with("/opensubsonic/rest/") {
            (200, SUBSONIC_OK.to_owned())
        } else if r.path.starts_with("/library/") {
            match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => (503, "warming up".to_owned()),
                _ => (200, "{}".to_owned()),
            }
        } else {
            (204, String::new())
        }
    });
    let source = tempfile::tempdir().unwrap();
    copy_tree(audio_library::shared(), source.path());
    let work = tempfile::tempdir().unwrap();
    let mountpoint = work.path().join("mnt");
    let told = work.path().join("told.txt");
    let url = server.url();
    let hooks = format!(
        r#"[[hooks]]
type = "subsonic"
name = "navidrome"
url = "{url}/navidrome/"
user = "admin"
password = "sesame-pw-1"
debounce_ms = 300

[[hooks]]
type = "subsonic"
name = "opensubsonic"
url = "{url}/opensubsonic"
api_key = "open-key-4"
debounce_ms = 300

[[hooks]]
type = "jellyfin"
url = "{url}"
api_key = "jellyfin-key-2"
library_path = "/media/music"
debounce_ms = 300

[[hooks]]
type = "plex"
url = "{url}"
token = "plex-token-3"
section = 7
debounce_ms = 300

[[hooks]]
type = "command"
command = ["sh", "-c", "printf '%s\n' \"$@\" >> '{told}'", "hook"]
debounce_ms = 300
"#,
        told = told.display(),
    );
    let config = local_config(work.path(), "disk", source.path(), &hooks);
    let mount = Mounted::start_logging(
        work.path(),
        &work.path().join("cache"),
        &["--config".into(), config.display().to_string()],
        Some(TRACKS[0].shown_as),
        "trace",
    );
    // The first scan is a change too: wait until it has been told, then
    // look at the new album alone.
    let settled = |s: &Status| s.hooks.iter().all(|h| h.runs >= 1);
    mount.wait_until(PATIENCE, |_| settled(&status_of(&mountpoint)));
    server.clear();
    let _ = std::fs::remove_file(&told);
    let before = status_of(&mountpoint).hooks;
    let plex_failures_before = before.iter().find(|h| h.kind == "plex").unwrap().failures;
    let before: Vec<u64> = before.iter().map(|h| h.runs).collect();
    plex_calls.store(0, std::sync::atomic::Ordering::SeqCst);

    new_album(source.path(), work.path(), "Solo", "Encore");
    let album = "Solo/Encore";
    mount.wait_until(PATIENCE, |_| {
        let now = status_of(&mountpoint);
        now.hooks.iter().zip(&before).all(|(h, b)| h.runs > *b)
            && server
                .requests()
                .iter()
                .any(|r| r.param("path").is_some_and(|p| p.ends_with(album)))
    });
    let requests = server.requests();
    let absolute = mountpoint.join(album).display().to_string();

    // Subsonic: GET rest/startScan under the base path, token authentication.
    let scan = requests
        .iter()
        .find(|r| r.path == "/navidrome/rest/startScan")
        .unwrap_or_else(|| panic!("no startScan in {requests:#?}"));
    assert_eq!(scan.method, "GET");
    assert_eq!(scan.param("u"), Some("admin"));
    assert_eq!(scan.param("c"), Some("musicfs"));
    assert_eq!(scan.param("f"), Some("json"));
    assert!(scan.param("v").is_some_and(|v| v >= "1.13.0"));
    let salt = scan.param("s").expect("a salt");
    assert_eq!(
        scan.param("t"),
        Some(md5_hex(&format!("sesame-pw-1{salt}")).as_str())
    );
    assert_eq!(scan.param("p"), None, "the password itself never travels");
    // An OpenSubsonic server with an API key: the key, and no user.
    let keyed = requests
        .iter()
        .find(|r| r.path == "/opensubsonic/rest/startScan")
        .unwrap_or_else(|| panic!("no keyed startScan in {requests:#?}"));
    assert_eq!(keyed.param("apiKey"), Some("open-key-4"));
    assert_eq!(
        (keyed.param("u"), keyed.param("t"), keyed.param("p")),
        (None, None, None)
    );

    // Jellyfin: POST Library/Media/Updated with the folder where it sees it.
    let jellyfin = requests
        .iter()
        .find(|r| r.path == "/Library/Media/Updated")
        .unwrap_or_else(|| panic!("no Media/Updated in {requests:#?}"));
    assert_eq!(jellyfin.method, "POST");
    assert_eq!(
        jellyfin.headers.get("authorization").map(String::as_str),
        Some("MediaBrowser Token=\"jellyfin-key-2\"")
    );
    let body: serde_json::Value = serde_json::from_str(&jellyfin.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"Updates": [{"Path": "/media/music/Solo/Encore", "UpdateType": "Modified"}]})
    );

    // Plex: a partial scan of the folder in section 7, after one refusal.
    let plex: Vec<&Request> = requests
        .iter()
        .filter(|r| r.path == "/library/sections/7/refresh")
        .collect();
    assert!(plex.len() >= 2, "a refusal, then the retry: {requests:#?}");
    for r in &plex {
        assert_eq!(r.method, "GET");
        assert_eq!(r.param("path"), Some(absolute.as_str()));
        assert_eq!(
            r.headers.get("x-plex-token").map(String::as_str),
            Some("plex-token-3")
        );
    }
    let now = status_of(&mountpoint);
    let plex_status = now.hooks.iter().find(|h| h.kind == "plex").unwrap();
    assert!(
        plex_status.failures > plex_failures_before,
        "{plex_status:?}"
    );
    assert!(plex_status.last.starts_with("ok"), "{plex_status:?}");

    // The command: the folder's path on the mount as its argument (once per
    // run: the album may have come in more than one batch).
    let told = std::fs::read_to_string(&told).unwrap();
    assert!(!told.is_empty());
    assert!(told.lines().all(|l| l == absolute), "{told}");

    // Secrets: not in the log at trace level, not in `status`.
    let shown = format!(
        "{}\n{}",
        mount.log(),
        String::from_utf8_lossy(
            &Command::new(musicfs_tests::musicfs_binary())
                .args(["status", "--mount"])
                .arg(&mountpoint)
                .output()
                .unwrap()
                .stdout
        )
    );
    assert!(shown.contains("hook plex (plex): ok"), "{shown}");
    for secret in ["sesame-pw-1", "jellyfin-key-2", "plex-token-3"] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
}

/// A real Subsonic server that takes only a password (Supysonic): the hook
/// tries a token, is told "a required parameter is missing" (10), sends the
/// password instead and keeps to it; the server lists a new album with no
/// manual scan. Navidrome and gonic (tokens) and API-key servers are not
/// installable here: the recorder test above checks the token form.
#[test]
fn a_subsonic_server_that_takes_only_a_password_learns_of_a_new_album() {
    use musicfs_tests::supysonic_server::{self, SupysonicServer};
    let source = tempfile::tempdir().unwrap();
    new_album(source.path(), source.path(), "Early", "Morning");
    let work = tempfile::tempdir().unwrap();
    let mountpoint = work.path().join("mnt");
    std::fs::create_dir_all(&mountpoint).unwrap();
    let port = musicfs_tests::s3_server::free_port();
    let config = local_config(
        work.path(),
        "disk",
        source.path(),
        &format!(
            "[[hooks]]\ntype = \"subsonic\"\nurl = \"http://127.0.0.1:{port}\"\nuser = \"{}\"\npassword = \"{}\"\ndebounce_ms = 300\nretries = 8\n",
            supysonic_server::USER,
            supysonic_server::PASSWORD
        ),
    );
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &["--config".into(), config.display().to_string()],
        Some("Early/Morning/01 - Opening.flac"),
    );
    // The server scans the mount once, as its owner would at setup.
    let server = SupysonicServer::start_on(&work.path().join("supysonic"), &mountpoint, port);
    server.call("startScan", "");
    mount.wait_until(PATIENCE, |_| server.albums().iter().any(|a| a == "Morning"));

    new_album(source.path(), work.path(), "Fresh", "First Light");
    mount.wait_until(PATIENCE, |m| {
        let listed = server.albums().iter().any(|a| a == "First Light");
        if !listed && !m.alive() {
            panic!("the daemon died:\n{}", m.log());
        }
        listed
    });
    let log = mount.log();
    assert!(log.contains("does not take a token login"), "{log}");
    assert!(log.contains("told of the changes"), "{log}");
    assert!(
        !log.contains(supysonic_server::PASSWORD),
        "the password is never logged"
    );
    let hook = &status_of(&mountpoint).hooks[0];
    assert!(hook.runs >= 1, "{hook:?}");
}
