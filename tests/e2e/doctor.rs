//! `musicfs doctor` names what is wrong, a line each, with what to do: here a
//! machine without fuse3 (no `fusermount3` on the PATH), an SFTP origin
//! whose password is wrong and one whose server cannot be reached, against
//! a real `sshd`; and on a machine where all is well, every line is `ok`.

use std::process::Command;

use musicfs_tests::s3_server::origins_config;
use musicfs_tests::ssh_server::SshServer;
use musicfs_tests::{install_plugin, musicfs_binary};

/// Runs `musicfs doctor` on `config` with the SFTP plugin and `path` as
/// `$PATH`: its exit status and its lines.
fn doctor(work: &std::path::Path, config: &toml::Table, path: &str) -> (bool, Vec<String>) {
    let plugins = work.join("plugins");
    install_plugin(&plugins, "musicfs_sftp");
    let file = work.join("musicfs.toml");
    std::fs::write(&file, toml::to_string(config).unwrap()).unwrap();
    let out = Command::new(musicfs_binary())
        .arg("doctor")
        .arg("--plugins")
        .arg(&plugins)
        .arg("--config")
        .arg(&file)
        .arg("--cache-dir")
        .arg(work.join("cache"))
        .env("PATH", path)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.success(), lines)
}

fn line<'a>(lines: &'a [String], start: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starts with {start:?}: {lines:#?}"))
}

#[test]
fn doctor_names_a_missing_fuse3_an_unreachable_origin_and_a_wrong_password() {
    let server = SshServer::start();
    let work = tempfile::tempdir().unwrap();
    let mut wrong = server.origin("nas");
    wrong.remove("private_key");
    wrong.insert("password".into(), "not-the-password".into());
    let mut away = server.origin("seedbox");
    let closed = musicfs_tests::s3_server::free_port();
    away.insert("port".into(), i64::from(closed).into());
    let config = origins_config(vec![wrong, away]);

    // A PATH without fusermount3, as on a machine without fuse3.
    let empty = work.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, lines) = doctor(work.path(), &config, &empty.display().to_string());
    assert!(!ok, "doctor passed: {lines:#?}");
    let fuse = line(&lines, "FAIL fuse:");
    assert!(
        fuse.contains("fusermount3") && fuse.contains("apt-get install fuse3"),
        "{fuse}"
    );
    let nas = line(&lines, "FAIL origin nas (sftp):");
    assert!(
        nas.contains("authentication failed") && nas.contains("password"),
        "{nas}"
    );
    assert!(
        !nas.contains("not-the-password"),
        "the password itself is never shown: {nas}"
    );
    let seedbox = line(&lines, "FAIL origin seedbox (sftp):");
    assert!(
        seedbox.contains("unreachable") && seedbox.contains("host and port"),
        "{seedbox}"
    );
    assert!(line(&lines, "ok   plugins:").contains("sftp"));

    // All well: the system's PATH, the origin as the server expects it.
    let (ok, lines) = doctor(
        work.path(),
        &origins_config(vec![server.origin("nas")]),
        &std::env::var("PATH").unwrap(),
    );
    let failed: Vec<&String> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(ok && failed.is_empty(), "{lines:#?}");
    assert!(line(&lines, "ok   origin nas (sftp):").contains("reachable"));
}
