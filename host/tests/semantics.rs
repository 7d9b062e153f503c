//! Keeps SEMANTICS.md honest: its tables of errnos, extended attributes and
//! deadlines are read and checked against the code.

use std::time::Duration;

use musicfs::config::HealthConfig;
use musicfs::fs::errno::read_errno;
use musicfs::fs::fuse::XATTRS;
use musicfs::mount::serve::STOP_STORE_WAIT;
use musicfs::origins::registry::DRAIN_LIMIT;
use musicfs::read::reader::STARTUP_WAIT;
use origin_api::ErrorKind;

const SEMANTICS: &str = include_str!("../../SEMANTICS.md");

/// The rows (cells, trimmed, backticks removed) of the first table after the
/// heading `heading`.
fn table(heading: &str) -> Vec<Vec<String>> {
    let start = SEMANTICS
        .lines()
        .position(|l| l.trim_start_matches('#').trim() == heading && l.starts_with('#'))
        .unwrap_or_else(|| panic!("SEMANTICS.md has no heading {heading:?}"));
    let rows: Vec<Vec<String>> = SEMANTICS
        .lines()
        .skip(start + 1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and its rule
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().replace('`', ""))
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "no table under {heading:?}");
    rows
}

fn errno_named(name: &str) -> i32 {
    match name {
        "EIO" => libc::EIO,
        "EACCES" => libc::EACCES,
        "ENOENT" => libc::ENOENT,
        other => panic!("SEMANTICS.md names an errno this test does not know: {other}"),
    }
}

#[test]
fn the_errno_table_is_what_errno_for_does() {
    let kinds = [
        ("NotFound", ErrorKind::NotFound),
        ("PermissionDenied", ErrorKind::PermissionDenied),
        ("Timeout", ErrorKind::Timeout),
        ("Unavailable", ErrorKind::Unavailable),
        ("InvalidConfig", ErrorKind::InvalidConfig),
        ("Other", ErrorKind::Other),
        ("Changed", ErrorKind::Changed),
    ];
    let rows = table("Errors");
    assert_eq!(rows.len(), kinds.len(), "one row per error kind");
    for (name, kind) in kinds {
        let row = rows
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row for {name}"));
        let errno = row[1].split_whitespace().next().unwrap_or_default();
        assert_eq!(errno_named(errno), read_errno(kind), "{name}");
    }
}

#[test]
fn the_xattr_table_lists_every_attribute() {
    let documented: Vec<String> = table("Extended attributes")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(documented, XATTRS);
}

#[test]
fn the_deadline_table_gives_the_defaults() {
    let rows = table("Deadlines");
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    let health = HealthConfig::default();
    let expect = [
        ("every origin call", health.call_deadline()),
        ("a read through the mount", health.read_deadline()),
        (
            "a read arriving while the origins are still opening",
            STARTUP_WAIT,
        ),
        ("taking an origin down", DRAIN_LIMIT),
        ("a stop, for the bytes readers were given", STOP_STORE_WAIT),
    ];
    assert_eq!(rows.len(), expect.len());
    for (row, (what, value)) in rows.iter().zip(expect) {
        assert!(row[0].starts_with(what), "{row:?}");
        assert!(
            row[1].contains(&ms(value)),
            "{what}: {row:?}, code says {value:?}"
        );
    }
    assert!(rows[1][1].starts_with("2 × timeout_ms"));
    let custom = HealthConfig {
        timeout_ms: 1234,
        ..HealthConfig::default()
    };
    assert_eq!(custom.read_deadline(), 2 * custom.call_deadline());
}

/// The two-column table whose header is `header`: a row's value by its name.
fn named_values(header: &str) -> impl Fn(&str) -> String {
    let start = SEMANTICS
        .find(header)
        .unwrap_or_else(|| panic!("SEMANTICS.md has no table {header:?}"));
    let rows: Vec<(String, String)> = SEMANTICS[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (cells[0].to_owned(), cells[1].to_owned())
        })
        .collect();
    move |name: &str| {
        rows.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no row {name:?}"))
            .1
            .clone()
    }
}

fn duration_named(text: &str) -> Duration {
    let (number, unit) = text.split_once(' ').unwrap_or((text, ""));
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("not a duration: {text}"));
    match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        other => panic!("SEMANTICS.md names a unit this test does not know: {other}"),
    }
}

#[test]
fn the_plugin_process_timings_are_the_supervisors() {
    use musicfs::plugins::process::supervisor::{
        ProcessOptions, FIRST_BACKOFF, MAX_BACKOFF, PING_TIMEOUT, STABLE,
    };
    let rows = table("Plugins");
    assert!(
        rows.iter().any(|r| r[0].starts_with("aborts")),
        "the first table is what a plugin can do"
    );
    // The second table of the section.
    let value = named_values("| process timing | value |");
    assert_eq!(duration_named(&value("first restart after")), FIRST_BACKOFF);
    assert_eq!(
        duration_named(&value("restarts back off to at most")),
        MAX_BACKOFF
    );
    assert_eq!(
        duration_named(&value("back-off starts again after an uptime of")),
        STABLE
    );
    assert_eq!(duration_named(&value("ping timeout")), PING_TIMEOUT);
    assert_eq!(value("hang_after"), "twice the call deadline, at least 2 s");
    for deadline_ms in [100, 1000, 2000, 5000] {
        let deadline = Duration::from_millis(deadline_ms);
        assert_eq!(
            ProcessOptions::new(deadline).hang_after,
            (deadline * 2).max(Duration::from_secs(2))
        );
    }
}

/// The tree's snapshot after a change: written within the delay the text gives.
#[test]
fn the_snapshot_delay_is_the_one_the_text_gives() {
    let said = format!(
        "within {} s of a change",
        musicfs::daemon::SNAPSHOT_AFTER.as_secs()
    );
    assert!(
        SEMANTICS
            .replace('\n', " ")
            .replace("  ", " ")
            .contains(&said),
        "SEMANTICS.md should say the tree's snapshot is written {said}"
    );
}

/// A scan's writes as it goes: as many at a time as the text says.
#[test]
fn a_scan_writes_as_many_at_a_time_as_the_text_gives() {
    let every = musicfs::library::scanner::WRITE_EVERY;
    let said = format!(
        "writes them to the index as it goes ({},{:03} at a time)",
        every / 1000,
        every % 1000
    );
    assert!(
        SEMANTICS
            .replace('\n', " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(&said),
        "SEMANTICS.md should say a scan {said}"
    );
}

/// Whether SEMANTICS.md says `phrase`, whatever its list items' line breaks.
fn says(phrase: &str) -> bool {
    SEMANTICS.replace("\n  ", " ").contains(phrase)
}

/// The tier's timings in SEMANTICS.md are the ones the code uses.
#[test]
fn the_tier_timings_are_the_codes() {
    use musicfs::tier::health::{
        FIRST_PAUSE, LONGEST_PAUSE, WRITE_FIRST_PAUSE, WRITE_LONGEST_PAUSE,
    };
    let named = named_values("| tier timing | value |");
    let value = |name: &str| duration_named(&named(name));
    let config: musicfs::config::tier::TierConfig = toml::from_str(
        "endpoint = \"http://x\"\nbucket = \"b\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"",
    )
    .unwrap();
    assert_eq!(value("each call's deadline, by default"), config.deadline());
    assert_eq!(value("first pause after a failed call"), FIRST_PAUSE);
    assert_eq!(value("pauses double up to"), LONGEST_PAUSE);
    assert_eq!(
        value("first pause of writes after a failed write"),
        WRITE_FIRST_PAUSE
    );
    assert_eq!(value("pauses of writes double up to"), WRITE_LONGEST_PAUSE);
    assert_eq!(
        value("a version the tier lacks is asked about again after"),
        musicfs::tier::ABSENT_FOR
    );
    let republished = format!(
        "again within {} s of a change its watch found",
        musicfs::daemon::INDEX_PUBLISH_AFTER.as_secs()
    );
    assert!(
        says(&republished),
        "SEMANTICS.md should say an index is published {republished}"
    );
    let follows = format!(
        "the mount looks for a newer index of it in the tier every {} s",
        musicfs::daemon::FOLLOW_EVERY.as_secs()
    );
    assert!(says(&follows), "SEMANTICS.md should say {follows}");
    let said = format!(
        "holds for {} s after its last renewal (every {} s)",
        musicfs::tier::SESSION_LIFE.as_secs(),
        musicfs::tier::SESSION_RENEW.as_secs()
    );
    assert!(says(&said), "SEMANTICS.md should say a session {said}");
}
