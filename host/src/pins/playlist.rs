//! M3U and M3U8 playlists for `musicfs pin`: one entry a line, `#` lines are
//! comments (`#EXTM3U`, `#EXTINF`), an entry is a path (absolute, or relative
//! to the playlist's folder, or, as MPD writes them, to the mount's root) or
//! a `file://` URL. Both are read as UTF-8 (M3U
//! in other encodings is rare in libraries that music servers write; a line
//! that is not UTF-8 is an error naming it).

use std::path::{Path, PathBuf};

/// Whether `path` names a playlist (by its extension).
pub fn is_playlist(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("m3u") || e.eq_ignore_ascii_case("m3u8"))
}

/// The entries of the playlist at `path`, in order, as written (relative ones
/// stay relative: see [`resolve`]).
pub fn entries(path: &Path) -> Result<Vec<PathBuf>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
    Ok(text
        .lines()
        .map(|line| line.trim_start_matches('\u{feff}').trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| match line.strip_prefix("file://") {
            // `file:///path`, or `file://host/path` (the host is this one).
            Some(url) => PathBuf::from(percent_decoded(&url[url.find('/').unwrap_or(0)..])),
            None => PathBuf::from(line),
        })
        .collect())
}

/// Where `entry` of the playlist in `folder` is: itself if absolute, else in
/// `folder` if it is there, else below `root` (the mount's root).
pub fn resolve(entry: &Path, folder: &Path, root: &Path) -> PathBuf {
    if entry.is_absolute() {
        return entry.to_owned();
    }
    let beside = folder.join(entry);
    if beside.exists() {
        beside
    } else {
        root.join(entry)
    }
}

/// `text` with `%XX` escapes decoded (as in `file://` URLs).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_paths_relative_to_the_playlist_or_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("Road Trip.m3u8");
        std::fs::write(
            &list,
            "\u{feff}#EXTM3U\n#EXTINF:123,Solo - One\nSolo/Numbers/01 - One.flac\n\n\
             /mnt/music/Pair/Mirror/01 - Twin.flac\r\nfile:///mnt/music/A%20B/01.flac\n",
        )
        .unwrap();
        assert!(is_playlist(&list));
        assert!(!is_playlist(Path::new("a.flac")));
        assert_eq!(
            entries(&list).unwrap(),
            [
                PathBuf::from("Solo/Numbers/01 - One.flac"),
                PathBuf::from("/mnt/music/Pair/Mirror/01 - Twin.flac"),
                PathBuf::from("/mnt/music/A B/01.flac"),
            ]
        );
        std::fs::write(list.with_extension("m3u"), "file://localhost/mnt/x.flac\n").unwrap();
        assert_eq!(
            entries(&list.with_extension("m3u")).unwrap(),
            [PathBuf::from("/mnt/x.flac")]
        );
    }

    #[test]
    fn a_relative_entry_is_beside_the_playlist_else_below_the_mount() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("here.flac"), b"x").unwrap();
        let (folder, root) = (dir.path(), Path::new("/mnt/music"));
        assert_eq!(
            resolve(Path::new("here.flac"), folder, root),
            folder.join("here.flac")
        );
        assert_eq!(
            resolve(Path::new("A/B/1.flac"), folder, root),
            root.join("A/B/1.flac")
        );
        assert_eq!(
            resolve(Path::new("/abs.flac"), folder, root),
            PathBuf::from("/abs.flac")
        );
    }
}
