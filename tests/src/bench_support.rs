//! Helpers shared by the benchmarks: data to read, timings, and `rclone mount`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sets `[cache] read_ahead_kb` in a mount's `config` from `BENCH_READ_AHEAD_KB`
/// when it is set, so that a benchmark can compare kernel read-ahead sizes.
pub fn read_ahead_from_env(config: &mut toml::Table) {
    if let Ok(kib) = std::env::var("BENCH_READ_AHEAD_KB") {
        let mut cache = toml::Table::new();
        cache.insert(
            "read_ahead_kb".into(),
            kib.parse::<i64>().expect("BENCH_READ_AHEAD_KB: KiB").into(),
        );
        config.insert("cache".into(), cache.into());
    }
}

/// Writes `len` bytes to `path`: the head of a FLAC with no tags (the scan
/// reads one block of it, as of a real track), then incompressible noise.
/// Noise alone was a bench of lofty: in about two files in five it sees an
/// MPEG frame sync early and searches the rest of the file for a second one.
///
/// Written beside `path` and renamed into place: a mount watching the folder
/// never sees it half written (a listing in the middle recorded a version
/// that the finished file then failed, and a read of it gave EIO).
pub fn noise_file(path: &Path, len: u64, seed: u64) {
    std::fs::create_dir_all(path.parent().expect("a file has a folder")).unwrap();
    let part = path.with_extension("part");
    write_noise(&part, len, seed);
    std::fs::rename(&part, path).unwrap();
}

fn write_noise(path: &Path, len: u64, seed: u64) {
    let mut x = seed;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let head = flac_head();
    assert!(len >= head.len() as u64);
    std::io::Write::write_all(&mut out, &head).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len - head.len() as u64;
    while left > 0 {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let n = left.min(buf.len() as u64) as usize;
        std::io::Write::write_all(&mut out, &buf[..n]).unwrap();
        left -= n as u64;
    }
    std::io::Write::flush(&mut out).unwrap();
}

/// `fLaC` and a last-block STREAMINFO: 4096-sample blocks, 44.1 kHz, stereo,
/// 16 bits, length and MD5 unknown.
fn flac_head() -> Vec<u8> {
    let mut head = b"fLaC".to_vec();
    head.extend([0x80, 0, 0, 34]); // last metadata block, STREAMINFO, 34 bytes
    head.extend(4096u16.to_be_bytes()); // min block size
    head.extend(4096u16.to_be_bytes()); // max block size
    head.extend([0; 6]); // min, max frame size: unknown
                         // 20 bits of sample rate, 3 of channels - 1, 5 of bits per sample - 1,
                         // 36 of total samples (0: unknown).
    let packed: u64 = (44_100 << 44) | (1 << 41) | (15 << 36);
    head.extend(packed.to_be_bytes());
    head.extend([0; 16]); // MD5: unknown
    head
}

/// The most tracks [`tagged_library`] makes (its tags have room for so many).
pub const MAX_TAGGED_TRACKS: usize = 10_000_000;

/// Where track `i` of a [`tagged_library`] shows in a mount.
pub fn tagged_track_shown(i: usize) -> String {
    format!(
        "ARTIST-{:05}/ALBUM-{:06}/01 - TITLE-{i:07}.flac",
        i / 200,
        i / 20
    )
}

/// Where track `i` of a [`tagged_library`] lies below its folder.
pub fn tagged_track_source(i: usize) -> String {
    format!(
        "artist{:05}/album{:06}/{:02}.flac",
        i / 200,
        i / 20,
        i % 20 + 1
    )
}

/// One FLAC made by ffmpeg, with where its tags' digits are: every track of a
/// [`tagged_library`] is a copy with the digits patched.
struct TaggedTemplate {
    bytes: Vec<u8>,
    /// Where the title's, artist's and album's digits start, and how many.
    digits: [(usize, usize); 3],
}

impl TaggedTemplate {
    fn new() -> TaggedTemplate {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("template.flac");
        let (title, artist, album) = ("TITLE-0000000", "ARTIST-00000", "ALBUM-000000");
        let tags = [
            ("title", title),
            ("artist", artist),
            ("album", album),
            ("track", "01"),
        ];
        crate::audio_library::ffmpeg("sine=frequency=440:duration=0.05", &tags, &[], &template);
        let bytes = std::fs::read(&template).unwrap();
        let digits = |tag: &str| {
            let at = bytes
                .windows(tag.len())
                .position(|w| w == tag.as_bytes())
                .unwrap();
            let dash = tag.find('-').unwrap() + 1;
            (at + dash, tag.len() - dash)
        };
        let digits = [digits(title), digits(artist), digits(album)];
        TaggedTemplate { bytes, digits }
    }

    /// Writes track `i` into `out` (a buffer reused between tracks).
    fn track(&self, i: usize, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.bytes);
        for ((at, width), value) in self.digits.into_iter().zip([i, i / 200, i / 20]) {
            out[at..at + width].copy_from_slice(format!("{value:0width$}").as_bytes());
        }
    }
}

/// `tracks` tagged FLACs under `dir` (20 per album, 200 per artist): one made by
/// ffmpeg, copied with its tag digits patched, so making 20,000 takes seconds
/// (and a million, minutes and about 2 GB).
pub fn tagged_library(dir: &Path, tracks: usize) {
    assert!(
        tracks <= MAX_TAGGED_TRACKS,
        "at most {MAX_TAGGED_TRACKS} tracks"
    );
    std::fs::create_dir_all(dir).unwrap();
    let template = TaggedTemplate::new();
    let mut bytes = Vec::new();
    for i in 0..tracks {
        let file = dir.join(tagged_track_source(i));
        if i % 20 == 0 {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        }
        template.track(i, &mut bytes);
        std::fs::write(file, &bytes).unwrap();
    }
}

/// Adds track `i` of a [`tagged_library`] to the one in `dir`, written beside
/// and renamed into place, as an upload tool would.
pub fn add_tagged_track(dir: &Path, i: usize) {
    let mut bytes = Vec::new();
    TaggedTemplate::new().track(i, &mut bytes);
    let file = dir.join(tagged_track_source(i));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let part = file.with_extension("part");
    std::fs::write(&part, &bytes).unwrap();
    std::fs::rename(part, file).unwrap();
}

/// rclone's flags for an S3 remote on `server`, with its test keys.
pub fn rclone_s3_flags(server: &crate::s3_server::S3Server) -> Vec<String> {
    use crate::s3_server::{ACCESS_KEY, SECRET_KEY};
    [
        "--s3-provider",
        "Other",
        "--s3-endpoint",
        &server.endpoint(),
        "--s3-access-key-id",
        ACCESS_KEY,
        "--s3-secret-access-key",
        SECRET_KEY,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// rclone's flags for an SFTP remote on `server`, logging in with its test key
/// and checking its host key.
pub fn rclone_sftp_flags(server: &crate::ssh_server::SshServer) -> Vec<String> {
    [
        "--sftp-host",
        &server.site.addr.to_string(),
        "--sftp-port",
        &server.port.to_string(),
        "--sftp-key-file",
        &server.client_key.display().to_string(),
        "--sftp-known-hosts-file",
        &server.known_hosts.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Reads a whole file; returns MB/s.
pub fn read_speed(path: &Path) -> f64 {
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total as f64 / 1e6 / started.elapsed().as_secs_f64()
}

/// Runs `work`, under a whole-system `perf record` (call graphs) written to
/// `$BENCH_PERF` when that is set and `first` is true: a profile of one row
/// (every process of it: the daemon, the plugin, the server, the reader).
pub fn profiled<T>(first: bool, work: impl FnOnce() -> T) -> T {
    let Some(out) = std::env::var_os("BENCH_PERF").filter(|_| first) else {
        return work();
    };
    let mut perf = Command::new("perf")
        .args(["record", "-a", "-g", "-F", "999", "-o"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf runs (apt-get install linux-perf)");
    // perf says nothing when it has started: give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    let done = work();
    // SAFETY: kill(2) with a pid we spawned; SIGINT makes perf write its file.
    unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
    let _ = perf.wait();
    done
}

/// Median and range of `figures`, formatted with `unit`.
pub fn spread(figures: &[f64], unit: &str) -> (f64, String) {
    let mut sorted = figures.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let digits = if unit == "ms" { 1 } else { 0 };
    let text = format!(
        "{median:.digits$} {unit} ({:.digits$}-{:.digits$})",
        sorted[0],
        sorted[sorted.len() - 1]
    );
    (median, text)
}

/// A sequential read of the `len` bytes of `file` through `plugin` loaded as
/// a `.so` and opened with `settings`, with no cache and no FUSE: (time to
/// its first 4 KiB, open included; MB/s).
pub fn plugin_alone(plugin: &str, settings: toml::Table, file: &str, len: u64) -> (Duration, f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let plugin = origin_api::host::load_plugin(&crate::plugin_library(plugin)).unwrap();
        let origin = plugin
            .open(origin_api::Settings::new("alone", settings))
            .await
            .unwrap();
        let started = Instant::now();
        let mut stream = origin.read_stream(file, 0, len, None);
        let (mut total, mut first) = (0u64, None);
        while let Some(piece) = stream.next().await {
            total += piece.unwrap().len() as u64;
            if first.is_none() && total >= 4096 {
                first = Some(started.elapsed());
            }
        }
        assert_eq!(total, len, "the plugin read {total} bytes");
        let mbps = total as f64 / 1e6 / started.elapsed().as_secs_f64();
        (first.unwrap(), mbps)
    })
}

/// Time to the first 4 KiB of a file at `offset` (open included).
pub fn first_byte(path: &Path, offset: u64) -> Duration {
    let started = Instant::now();
    let mut file = std::fs::File::open(path).unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)).unwrap();
    let mut buf = [0u8; 4096];
    file.read_exact(&mut buf).unwrap();
    started.elapsed()
}

/// `find` + `stat` of every entry below `root`: (entries, time).
pub fn find_stat(root: &Path) -> (usize, Duration) {
    let started = Instant::now();
    let mut count = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            count += 1;
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    (count, started.elapsed())
}

/// A peer's FUSE mount for comparison (`rclone mount`, `s3fs`); unmounted when
/// dropped.
pub struct PeerMount {
    child: Child,
    pub mountpoint: PathBuf,
}

impl PeerMount {
    /// The peer's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `rclone mount` of a local folder, read-only with a full VFS cache.
    pub fn rclone(source: &Path, work: &Path) -> PeerMount {
        Self::rclone_remote(&source.display().to_string(), &[], work)
    }

    /// `rclone mount` of any remote (`:s3:bucket`, a path) with extra flags.
    pub fn rclone_remote(remote: &str, flags: &[String], work: &Path) -> PeerMount {
        let mountpoint = work.join("rclone-mnt");
        std::fs::create_dir_all(&mountpoint).unwrap();
        let mut command = Command::new("rclone");
        command
            .arg("mount")
            .arg(remote)
            .arg(&mountpoint)
            .args(flags)
            // rclone 1.60's S3 client refuses a CA bundle from the environment.
            .env_remove("AWS_CA_BUNDLE")
            .args(["--read-only", "--vfs-cache-mode", "full", "--cache-dir"])
            .arg(work.join("rclone-cache"));
        Self::start(command, mountpoint, "rclone (apt-get install rclone)")
    }

    /// `s3fs` (foreground) of `bucket` at a path-style `endpoint`, read-only, one
    /// retry, no local cache (its default).
    pub fn s3fs(
        bucket: &str,
        endpoint: &str,
        access_key: &str,
        secret_key: &str,
        work: &Path,
    ) -> PeerMount {
        let mountpoint = work.join("s3fs-mnt");
        std::fs::create_dir_all(&mountpoint).unwrap();
        let passwd = work.join("s3fs-passwd");
        std::fs::write(&passwd, format!("{access_key}:{secret_key}\n")).unwrap();
        // s3fs refuses a password file that others may read.
        std::fs::set_permissions(&passwd, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut command = Command::new("s3fs");
        command
            .arg(bucket)
            .arg(&mountpoint)
            .arg("-f")
            .args([
                "-o",
                "ro",
                "-o",
                "use_path_request_style",
                "-o",
                "retries=1",
            ])
            .arg("-o")
            .arg(format!("url={endpoint}"))
            .arg("-o")
            .arg(format!("passwd_file={}", passwd.display()));
        Self::start(command, mountpoint, "s3fs (apt-get install s3fs)")
    }

    /// `sshfs` (foreground, read-only) of `remote_path` on an sshd at
    /// `host`:`port`, logging in with `key`, host key checked against
    /// `known_hosts`; its defaults otherwise.
    pub fn sshfs(
        host: &str,
        port: u16,
        remote_path: &Path,
        key: &Path,
        known_hosts: &Path,
        work: &Path,
    ) -> PeerMount {
        let mountpoint = work.join("sshfs-mnt");
        std::fs::create_dir_all(&mountpoint).unwrap();
        let mut command = Command::new("sshfs");
        command
            .arg(format!("{host}:{}", remote_path.display()))
            .arg(&mountpoint)
            .args(["-f", "-o", "ro", "-p", &port.to_string()])
            .arg("-o")
            .arg(format!("IdentityFile={}", key.display()))
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]);
        Self::start(command, mountpoint, "sshfs (apt-get install sshfs)")
    }

    fn start(mut command: Command, mountpoint: PathBuf, what: &str) -> PeerMount {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} runs: {e}"));
        let started = Instant::now();
        while !musicfs::mount::mountpoint::is_mounted(&mountpoint) {
            assert!(
                // rclone's S3 backend took 90 s to mount behind the
                // emulated link (three 30 s timeouts of its own).
                started.elapsed() < Duration::from_secs(120),
                "{what} did not mount"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PeerMount { child, mountpoint }
    }
}

impl Drop for PeerMount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mountpoint)
            .status();
        let _ = Command::new("fusermount")
            .arg("-u")
            .arg(&self.mountpoint)
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pid` and every process below it: a mount's keeper, its daemon and the
/// daemon's plugin processes, or a peer tool and its helpers.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut at = 0;
    while at < all.len() {
        let parent = all[at];
        at += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    all
}

/// Starts the peak resident set size of `pid` and the processes below it over
/// from what each holds now (Linux 4.0+, `clear_refs` 5), so [`peak_rss_mb`]
/// then gives the peak of what follows.
pub fn reset_peak_rss(pid: u32) {
    for pid in process_tree(pid) {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
}

/// Resident set size of `pid` and the processes below it now, in MB.
pub fn rss_mb(pid: u32) -> f64 {
    process_tree(pid)
        .into_iter()
        .map(|p| status_mb(p, "VmRSS:"))
        .sum()
}

/// Proportional set size of `pid` and the processes below it now, in MB: a
/// page shared by several (a plugin process's read pool) counts once, split
/// between them.
pub fn pss_mb(pid: u32) -> f64 {
    process_tree(pid).into_iter().map(pss_of).sum()
}

fn pss_of(pid: u32) -> f64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Each process of `pid`'s tree: its command (the first two words), its
/// resident and its proportional set size now, in MB.
pub fn memory_by_process(pid: u32) -> Vec<(String, f64, f64)> {
    process_tree(pid)
        .into_iter()
        .map(|p| {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let words: Vec<String> = cmdline
                .split(|b| *b == 0)
                .take(2)
                .map(|w| {
                    String::from_utf8_lossy(w)
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
            (words.join(" "), status_mb(p, "VmRSS:"), pss_of(p))
        })
        .collect()
}

fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The peak resident memory of `pid` and the processes below it, in MB: the
/// sum of each one's peak (at most the peak of the sum; memory two of them
/// share, such as a plugin process's read pool, counts in both).
pub fn peak_rss_mb(pid: u32) -> f64 {
    process_tree(pid)
        .into_iter()
        .map(|p| status_mb(p, "VmHWM:"))
        .sum()
}
