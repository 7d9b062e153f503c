//! `--metrics`: a real mount's `/metrics`, parsed by the Prometheus project's
//! own parser (Python's `prometheus_client`), against `METRICS.md`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use musicfs_tests::audio_library;
use musicfs_tests::mounted::Mounted;
use musicfs_tests::s3_server::free_port;

/// One scrape, parsed: families by name with their type, and every sample as
/// (name, labels `k=v` joined by `,` in key order, value).
#[derive(Debug, Default)]
struct Scrape {
    families: BTreeMap<String, String>,
    samples: Vec<(String, String, f64)>,
}

impl Scrape {
    /// The value of sample `name` whose labels are `labels`.
    fn value(&self, name: &str, labels: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| *v)
    }
}

/// `GET /metrics` over HTTP/1.0 (the body then ends with the connection).
fn get_metrics(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1."), "{head}");
    assert!(head.contains(" 200 "), "{head}");
    Some(body.to_owned())
}

const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print("family", family.name, family.type)
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print("sample", s.name, labels or "-", repr(s.value))
"#;

/// Parses `text` with `prometheus_client` (which raises on what is not the
/// text format).
fn parse(text: &str) -> Scrape {
    let mut python = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the scrape (pip install prometheus-client):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut scrape = Scrape::default();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["family", name, kind] => {
                scrape.families.insert(name.into(), kind.into());
            }
            ["sample", name, labels, value] => scrape.samples.push((
                name.into(),
                if labels == "-" { "" } else { labels }.into(),
                value.parse().unwrap(),
            )),
            _ => panic!("unexpected parser output {line:?}"),
        }
    }
    scrape
}

/// METRICS.md's table: metric name → type.
fn documented() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../METRICS.md"))
        .unwrap();
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix("`musicfs_")?.strip_suffix('`')?;
            Some((format!("musicfs_{name}"), cells.get(2)?.to_string()))
        })
        .collect()
}

#[test]
fn metrics_parse_and_say_what_the_mount_did() {
    // Four tracks of noise, 600 KB each, over a 1 MB cache: reading them all
    // evicts.
    let source = tempfile::tempdir().unwrap();
    audio_library::noise_album(source.path(), "Gauges", 4, 4);
    let work = tempfile::tempdir().unwrap();
    // And an origin that watches by polling: an SFTP server whose library
    // has two folders (a poll lists three: the root and each folder).
    let seedbox = musicfs_tests::ssh_server::SshServer::start();
    for (dir, file) in [("a", "x.txt"), ("b", "y.txt")] {
        std::fs::create_dir_all(seedbox.library.join(dir)).unwrap();
        std::fs::write(seedbox.library.join(dir).join(file), b"notes").unwrap();
    }
    musicfs_tests::install_plugin(&work.path().join("plugins"), "musicfs_sftp");
    let sftp = toml::to_string(&seedbox.origin("seedbox")).unwrap();
    // And a shared tier, for its series.
    let cluster = musicfs_tests::garage_cluster::GarageCluster::start(3);
    let tier = cluster.tier_settings(0, "metrics");
    let config = musicfs_tests::local_config(
        work.path(),
        "noise",
        source.path(),
        &format!(
            "[[origins]]\n{sftp}\n[cache]\ncontent_cache_gb = 0.001\n[tier]\n{}",
            toml::to_string(&tier).unwrap()
        ),
    );
    let port = free_port();
    let args = [
        "--config".to_owned(),
        config.display().to_string(),
        "--metrics".to_owned(),
        format!("127.0.0.1:{port}"),
    ];
    let mount = Mounted::start(
        work.path(),
        &work.path().join("cache"),
        &args,
        Some("Hiss/Gauges/Noise 3.flac"),
    );
    for i in 0..4 {
        std::fs::read(mount.path(&format!("Hiss/Gauges/Noise {i}.flac"))).unwrap();
    }
    // Read again past the kernel's page cache (O_DIRECT): the daemon serves it
    // from its cache.
    let mut again = Vec::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(mount.path("Hiss/Gauges/Noise 3.flac"))
        .unwrap()
        .read_to_end(&mut again)
        .unwrap();
    assert_eq!(again, std::fs::read(source.path().join("3.flac")).unwrap());

    // Gauges are sampled once a second: wait for the sample that saw it all.
    let last = std::cell::RefCell::new(Scrape::default());
    mount.wait_until(Duration::from_secs(60), |_| {
        let Some(text) = get_metrics(port) else {
            return false;
        };
        let scrape = parse(&text);
        let done = scrape.value("musicfs_library_tracks", "") == Some(4.0)
            && scrape.value("musicfs_cache_hits_total", "").unwrap_or(0.0) >= 1.0
            && scrape.value("musicfs_scans_total", "").unwrap_or(0.0) >= 1.0
            && scrape
                .value("musicfs_polls_total", "origin=seedbox")
                .unwrap_or(0.0)
                >= 2.0;
        *last.borrow_mut() = scrape;
        done
    });
    let scrape = last.into_inner();

    // The same metrics, of the same types, as METRICS.md says.
    let served: BTreeMap<String, String> = scrape
        .families
        .iter()
        .map(|(name, kind)| {
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.clone()
            };
            (name, kind.clone())
        })
        .collect();
    assert_eq!(served, documented(), "METRICS.md and the scrape differ");

    // Each poll of the seedbox: three listings, its two files' paths and
    // versions.
    let polled = "origin=seedbox";
    let polls = scrape.value("musicfs_polls_total", polled).unwrap();
    assert_eq!(
        scrape.value("musicfs_poll_failures_total", polled),
        Some(0.0)
    );
    assert_eq!(
        scrape.value("musicfs_poll_last_requests", polled),
        Some(3.0)
    );
    assert_eq!(
        scrape.value("musicfs_poll_requests_total", polled),
        Some(3.0 * polls)
    );
    let listed = scrape
        .value("musicfs_poll_last_listed_bytes", polled)
        .unwrap();
    assert!(listed >= 14.0, "{listed} bytes of paths and versions");
    assert_eq!(
        scrape.value("musicfs_poll_listed_bytes_total", polled),
        Some(listed * polls)
    );
    assert!(scrape.value("musicfs_poll_last_seconds", polled).is_some());

    let origin = "origin=noise";
    assert_eq!(scrape.value("musicfs_origin_healthy", origin), Some(1.0));
    assert_eq!(
        scrape.value("musicfs_origin_consecutive_failures", origin),
        Some(0.0)
    );
    let read = scrape
        .value("musicfs_origin_read_bytes_total", origin)
        .unwrap();
    assert!(read >= 4.0 * 500_000.0, "{read} bytes read from the origin");
    let streams = "op=read_stream,origin=noise";
    let ok = scrape.value(
        "musicfs_origin_requests_total",
        &format!("{streams},outcome=ok"),
    );
    assert!(ok.unwrap_or(0.0) >= 4.0, "{:?}", scrape.samples);
    let timed = scrape
        .value("musicfs_origin_request_duration_seconds_count", streams)
        .unwrap();
    assert_eq!(Some(timed), ok, "every stream timed");
    // Both plugins' processes run and were never started again.
    for plugin in ["plugin=local", "plugin=sftp"] {
        assert_eq!(
            scrape.value("musicfs_plugin_up", plugin),
            Some(1.0),
            "{plugin}"
        );
        assert_eq!(
            scrape.value("musicfs_plugin_restarts_total", plugin),
            Some(0.0),
            "{plugin}"
        );
    }
    assert!(scrape.value("musicfs_cache_misses_total", "").unwrap() >= 4.0);
    assert!(scrape.value("musicfs_cache_evictions_total", "").unwrap() >= 1.0);
    assert!(
        scrape
            .value("musicfs_cache_evicted_bytes_total", "")
            .unwrap()
            > 0.0
    );
    assert_eq!(
        scrape.value("musicfs_cache_limit_bytes", ""),
        Some(1_000_000.0)
    );
    assert_eq!(scrape.value("musicfs_cache_pinned_bytes", ""), Some(0.0));
    let cached = scrape.value("musicfs_cache_bytes", "").unwrap();
    assert!(cached > 0.0 && cached <= 1_000_000.0, "{cached}");
    assert!(
        scrape
            .value("musicfs_fuse_requests_total", "op=read")
            .unwrap()
            >= 5.0
    );
    assert!(
        scrape
            .value("musicfs_fuse_requests_total", "op=lookup")
            .unwrap()
            >= 1.0
    );
    assert!(scrape.value("musicfs_scan_files_total", "").unwrap() >= 4.0);
    assert_eq!(scrape.value("musicfs_scan_running", ""), Some(0.0));
    assert!(
        scrape
            .value("musicfs_tree_changes_total", "how=whole")
            .unwrap()
            >= 1.0
    );

    // A track added at the origin: its change batch lays out its folder, it
    // does not build the tree whole.
    let folders = scrape
        .value("musicfs_tree_changes_total", "how=folders")
        .unwrap();
    std::fs::copy(
        source.path().join("3.flac"),
        source.path().join("again.flac"),
    )
    .unwrap();
    mount.wait_until(Duration::from_secs(60), |_| {
        get_metrics(port).is_some_and(|text| {
            let scrape = parse(&text);
            scrape.value("musicfs_library_tracks", "") == Some(5.0)
                && scrape.value("musicfs_tree_changes_total", "how=folders") > Some(folders)
        })
    });
    mount.stop();
}
