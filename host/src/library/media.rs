//! Which files the library shows: audio, by extension, and album covers by name.

/// Extensions of the audio formats lofty reads tags from.
const AUDIO: &[&str] = &[
    "flac", "mp3", "m4a", "m4b", "mp4", "aac", "ogg", "oga", "opus", "spx", "wav", "wave", "aif",
    "aiff", "aifc", "wv", "ape", "mpc",
];

/// Image extensions a cover may have.
const IMAGE: &[&str] = &["jpg", "jpeg", "png", "webp", "gif"];

/// Base names that make an image an album cover.
const COVER: &[&str] = &[
    "cover",
    "folder",
    "front",
    "album",
    "albumart",
    "albumartsmall",
];

/// The lower-case extension of a file name.
pub fn extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// Whether `name` is an audio file the library shows.
pub fn is_audio(name: &str) -> bool {
    extension(name).is_some_and(|e| AUDIO.contains(&e.as_str()))
}

/// Whether `name` is an album cover image.
pub fn is_cover(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    IMAGE.contains(&ext.to_ascii_lowercase().as_str())
        && COVER.contains(&stem.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_audio_and_covers() {
        assert!(is_audio("01 Song.FLAC"));
        assert!(is_audio("a.opus"));
        assert!(!is_audio("notes.txt"));
        assert!(!is_audio(".flac"));
        assert!(is_cover("Folder.JPG"));
        assert!(is_cover("cover.png"));
        assert!(!is_cover("scan-001.jpg"));
    }
}
