//! `musicfs pin`, `unpin` and `pins`: the command line's side of the
//! requests in [`super::requests`].
//!
//! Paths are given as they are seen: files or folders inside the mount (or
//! M3U playlists, whose entries are). They are resolved to the mount they lie
//! in (`--mount`, else the running mount holding the first of them, else the
//! only running mount) and sent relative to it.

use std::path::{Path, PathBuf};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::control::socket::{find_mount, mount_holding, request_each};
use crate::pins::playlist;

/// The control socket to ask, and `paths` relative to its mount.
fn resolve(mount: Option<&Path>, paths: &[PathBuf]) -> Result<(PathBuf, Vec<String>), String> {
    let first = paths.first().ok_or("no path given")?;
    // The mount: named, else the one holding the first path (or playlist),
    // else the only one running.
    let (socket, mountpoint) = match mount {
        Some(mount) => find_mount(Some(mount))?,
        None => match std::fs::canonicalize(first)
            .ok()
            .and_then(|p| mount_holding(&p))
        {
            Some(found) => found,
            None => find_mount(None)?,
        },
    };
    let mut expanded = Vec::new();
    for path in paths {
        if !playlist::is_playlist(path) {
            expanded.push(path.clone());
            continue;
        }
        let entries = playlist::entries(path)?;
        if entries.is_empty() {
            return Err(format!("{}: the playlist has no entries", path.display()));
        }
        let folder = path.parent().unwrap_or(Path::new("."));
        expanded.extend(
            entries
                .iter()
                .map(|entry| playlist::resolve(entry, folder, &mountpoint)),
        );
    }
    let relative = expanded
        .iter()
        .map(|given| {
            let path =
                std::fs::canonicalize(given).map_err(|e| format!("{}: {e}", given.display()))?;
            let inside = path.strip_prefix(&mountpoint).map_err(|_| {
                format!(
                    "{} is not inside the mount at {}",
                    given.display(),
                    mountpoint.display()
                )
            })?;
            inside
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{}: not UTF-8", given.display()))
        })
        .collect::<Result<Vec<String>, String>>()?;
    Ok((socket, relative))
}

/// The `error` of an answer line, if it is one.
fn error_of(answer: &Value) -> Option<String> {
    answer["error"].as_str().map(str::to_owned)
}

fn parse(line: &str) -> Result<Value, String> {
    serde_json::from_str(line).map_err(|e| format!("unreadable answer {line:?}: {e}"))
}

/// `musicfs pin`: pins, then shows progress until everything is cached.
pub fn pin(mount: Option<&Path>, paths: &[PathBuf]) -> Result<(), String> {
    let (socket, relative) = resolve(mount, paths)?;
    let request = format!(
        "pin {}",
        serde_json::to_string(&relative).map_err(|e| e.to_string())?
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} ({elapsed})",
        )
        .expect("a valid template"),
    );
    let mut last = Value::Null;
    request_each(&socket, &request, |line| {
        let answer = parse(line)?;
        if let Some(error) = error_of(&answer) {
            return Err(error);
        }
        let number = |key: &str| answer[key].as_u64().unwrap_or(0);
        bar.set_length(number("bytes_total"));
        bar.set_position(number("bytes_done"));
        bar.set_message(format!(
            "{}/{} files",
            number("files_done"),
            number("files_total")
        ));
        let done = answer["done"].as_bool() == Some(true);
        last = answer;
        Ok(!done)
    })?;
    bar.finish_and_clear();
    if last["done"].as_bool() != Some(true) {
        return Err("the mount stopped before the pin was done (it stays pinned)".into());
    }
    let pinned = relative.join(", ");
    let (files, bytes) = (last["files_total"].as_u64(), last["bytes_total"].as_u64());
    let failed = last["failed"].as_array().cloned().unwrap_or_default();
    if failed.is_empty() {
        println!(
            "pinned {pinned}: {} files, {}, all cached",
            files.unwrap_or(0),
            HumanBytes(bytes.unwrap_or(0))
        );
        return Ok(());
    }
    for entry in &failed {
        println!(
            "not fetched: {}: {}",
            entry[0].as_str().unwrap_or("?"),
            entry[1].as_str().unwrap_or("?")
        );
    }
    Err(format!(
        "pinned {pinned}, but {} of {} files could not be fetched yet; they will be when their origin answers",
        failed.len(),
        files.unwrap_or(0)
    ))
}

/// `musicfs unpin`.
pub fn unpin(mount: Option<&Path>, paths: &[PathBuf]) -> Result<(), String> {
    let (socket, relative) = resolve(mount, paths)?;
    let request = format!(
        "unpin {}",
        serde_json::to_string(&relative).map_err(|e| e.to_string())?
    );
    let mut ok = false;
    request_each(&socket, &request, |line| {
        let answer = parse(line)?;
        if let Some(error) = error_of(&answer) {
            return Err(error);
        }
        ok = answer["ok"].as_bool() == Some(true);
        Ok(false)
    })?;
    match ok {
        true => Ok(()),
        false => Err("the mount did not answer".into()),
    }
}

/// `musicfs pins`: a table, or the JSON list.
pub fn list(mount: Option<&Path>, json: bool) -> Result<(), String> {
    let (socket, _) = find_mount(mount)?;
    let mut pins = Value::Null;
    request_each(&socket, "pins", |line| {
        pins = parse(line)?;
        Ok(false)
    })?;
    if let Some(error) = error_of(&pins) {
        return Err(error);
    }
    if json {
        println!("{pins}");
        return Ok(());
    }
    let pins = pins.as_array().cloned().unwrap_or_default();
    if pins.is_empty() {
        println!("nothing is pinned");
        return Ok(());
    }
    println!("{:>6} {:>10} {:>7}  PIN", "FILES", "SIZE", "CACHED");
    for pin in pins {
        let number = |key: &str| pin[key].as_u64().unwrap_or(0);
        let (bytes, cached) = (number("bytes"), number("cached_bytes"));
        let share = match bytes {
            0 => "-".to_owned(),
            _ => format!("{:.0}%", (cached as f64 / bytes as f64 * 100.0).floor()),
        };
        let path = pin["path"].as_str().unwrap_or("?");
        let note = match pin["in_library"].as_bool() {
            Some(false) => "  (not in the library now)",
            _ => "",
        };
        println!(
            "{:>6} {:>10} {:>7}  /{path}{note}",
            number("files"),
            HumanBytes(bytes).to_string(),
            share
        );
    }
    Ok(())
}
