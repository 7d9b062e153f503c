//! A program of the user's: `command = [program, args...]`, the changed
//! folders (absolute paths on the mount) appended as arguments. It succeeds
//! when the program exits 0; one that outlives the run's deadline is killed.

use std::path::PathBuf;
use std::process::Stdio;

/// Runs `command` with `folders` appended.
pub async fn run(command: &[String], folders: &[PathBuf]) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("an empty command")?;
    let out = tokio::process::Command::new(program)
        .args(args)
        .args(folders)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Cancelled at the deadline: the program goes too.
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.trim();
    let said: String = said.chars().take(200).collect();
    Err(format!("{program} {}: {said}", out.status))
}
