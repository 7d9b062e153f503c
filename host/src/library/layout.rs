//! From tags to a path: a small template language, and the rules that make every
//! name safe to show.
//!
//! A template is `/`-separated segments of text and `{field}`s; a part in `[…]` is
//! dropped when any field inside it is empty. The default,
//! `{albumartist}/{album}/[{disc}-][{track} - ]{title}`, gives
//! `Artist/Album/01 - Title.flac`, `1-03 - Title.flac` on multi-disc albums and
//! `Title.flac` when there is no track number. The extension is always the source's.
//!
//! Fields: `albumartist` (album artist, else artist, else "Unknown Artist"; "Various
//! Artists" for compilations), `artist`, `album` ("Unknown Album"), `title` (else the
//! file name), `track` (two digits), `disc` (only on multi-disc albums).

use super::tag_reader::Tags;

/// The default layout.
pub const DEFAULT_LAYOUT: &str = "{albumartist}/{album}/[{disc}-][{track} - ]{title}";

/// The longest name most file systems accept, in bytes.
pub const NAME_MAX: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
    Optional(Vec<Part>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    AlbumArtist,
    Artist,
    Album,
    Title,
    Track,
    Disc,
}

/// A parsed layout template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    segments: Vec<Vec<Part>>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout::parse(DEFAULT_LAYOUT).expect("the default layout parses")
    }
}

impl Layout {
    /// Parses a template; the error says what is wrong.
    pub fn parse(template: &str) -> Result<Layout, String> {
        let segments = template
            .split('/')
            .map(|segment| {
                let (parts, rest) = parse_parts(segment, false)?;
                if !rest.is_empty() {
                    return Err(format!("unbalanced `]` in {segment:?}"));
                }
                if parts.is_empty() {
                    return Err("empty path segment".to_owned());
                }
                Ok(parts)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Layout { segments })
    }

    /// The path segments for a track with `tags`, found as `file_name` on its origin.
    pub fn render(&self, tags: &Tags, file_name: &str) -> Vec<String> {
        let (stem, ext) = match file_name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
            _ => (file_name, None),
        };
        let last = self.segments.len() - 1;
        self.segments
            .iter()
            .enumerate()
            .map(|(i, parts)| {
                let text = render_parts(parts, tags, stem).unwrap_or_default();
                if i == last {
                    let base = if text.trim().is_empty() {
                        stem.to_owned()
                    } else {
                        text
                    };
                    safe_file_name(&base, ext)
                } else {
                    safe_name(&text, "Unknown")
                }
            })
            .collect()
    }
}

fn parse_parts(mut s: &str, nested: bool) -> Result<(Vec<Part>, &str), String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    while let Some(c) = s.chars().next() {
        match c {
            '{' => {
                let end = s.find('}').ok_or("unclosed `{`")?;
                let field = match &s[1..end] {
                    "albumartist" => Field::AlbumArtist,
                    "artist" => Field::Artist,
                    "album" => Field::Album,
                    "title" => Field::Title,
                    "track" => Field::Track,
                    "disc" => Field::Disc,
                    other => return Err(format!("unknown field `{{{other}}}`")),
                };
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Field(field));
                s = &s[end + 1..];
            }
            '[' => {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                let (inner, rest) = parse_parts(&s[1..], true)?;
                let rest = rest.strip_prefix(']').ok_or("unclosed `[`")?;
                parts.push(Part::Optional(inner));
                s = rest;
            }
            ']' if nested => break,
            ']' => return Err("unbalanced `]`".to_owned()),
            c => {
                text.push(c);
                s = &s[c.len_utf8()..];
            }
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok((parts, s))
}

/// Renders parts; `None` when an optional group must vanish.
fn render_parts(parts: &[Part], tags: &Tags, stem: &str) -> Option<String> {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Field(f) => out.push_str(&field(*f, tags, stem)?),
            Part::Optional(inner) => {
                if let Some(text) = render_parts(inner, tags, stem) {
                    out.push_str(&text);
                }
            }
        }
    }
    Some(out)
}

fn field(f: Field, tags: &Tags, stem: &str) -> Option<String> {
    let clean = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    match f {
        Field::AlbumArtist if tags.compilation && clean(&tags.album_artist).is_none() => {
            Some("Various Artists".to_owned())
        }
        Field::AlbumArtist => Some(
            clean(&tags.album_artist)
                .or_else(|| clean(&tags.artist))
                .unwrap_or_else(|| "Unknown Artist".to_owned()),
        ),
        Field::Artist => Some(clean(&tags.artist).unwrap_or_else(|| "Unknown Artist".to_owned())),
        Field::Album => Some(clean(&tags.album).unwrap_or_else(|| "Unknown Album".to_owned())),
        Field::Title => Some(clean(&tags.title).unwrap_or_else(|| stem.to_owned())),
        Field::Track => tags.track.map(|n| format!("{n:02}")),
        Field::Disc => {
            let multi = tags.disc_total.is_some_and(|t| t > 1) || tags.disc.is_some_and(|d| d > 1);
            tags.disc.filter(|_| multi).map(|d| d.to_string())
        }
    }
}

/// A name safe to show: no `/`, NUL or control characters, not `.` or `..`, not
/// empty (then `fallback`), at most [`NAME_MAX`] bytes cut at a character boundary.
pub fn safe_name(raw: &str, fallback: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    let name = match trimmed {
        "" => fallback.to_owned(),
        "." | ".." => format!("_{trimmed}"),
        _ => trimmed.to_owned(),
    };
    truncate(&name, NAME_MAX).to_owned()
}

/// A safe file name `base.ext` whose extension survives truncation.
pub fn safe_file_name(base: &str, ext: Option<&str>) -> String {
    let ext = ext.map(|e| safe_name(e, "bin"));
    let suffix_len = ext.as_ref().map_or(0, |e| e.len() + 1);
    let base = safe_name(base, "Untitled");
    let base = truncate(&base, NAME_MAX.saturating_sub(suffix_len).max(1)).trim_end();
    match ext {
        Some(ext) => format!("{base}.{ext}"),
        None => base.to_owned(),
    }
}

/// `name` with ` (n)` before its extension, kept within [`NAME_MAX`].
pub fn with_suffix(name: &str, n: usize) -> String {
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) if !b.is_empty() => (b, Some(e)),
        _ => (name, None),
    };
    let tag = format!(" ({n})");
    let ext_len = ext.map_or(0, |e| e.len() + 1);
    let base = truncate(base, NAME_MAX.saturating_sub(ext_len + tag.len()).max(1));
    match ext {
        Some(ext) => format!("{base}{tag}.{ext}"),
        None => format!("{base}{tag}"),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(title: &str, artist: &str, album: &str, track: Option<u32>) -> Tags {
        Tags {
            title: Some(title.into()),
            artist: Some(artist.into()),
            album: Some(album.into()),
            track,
            ..Tags::default()
        }
    }

    #[test]
    fn the_default_layout_follows_the_rules() {
        let layout = Layout::default();
        assert_eq!(
            layout.render(&tags("Song", "Band", "Record", Some(1)), "x.flac"),
            ["Band", "Record", "01 - Song.flac"]
        );
        assert_eq!(
            layout.render(&tags("Song", "Band", "Record", None), "x.mp3"),
            ["Band", "Record", "Song.mp3"]
        );
        let mut multi = tags("Song", "Band", "Record", Some(3));
        multi.disc = Some(1);
        multi.disc_total = Some(2);
        multi.album_artist = Some("The Band".into());
        assert_eq!(
            layout.render(&multi, "x.flac"),
            ["The Band", "Record", "1-03 - Song.flac"]
        );
        let mut comp = tags("Song", "Someone", "Hits", Some(7));
        comp.compilation = true;
        assert_eq!(
            layout.render(&comp, "x.ogg"),
            ["Various Artists", "Hits", "07 - Song.ogg"]
        );
        assert_eq!(
            layout.render(&Tags::default(), "raw take.wav"),
            ["Unknown Artist", "Unknown Album", "raw take.wav"]
        );
    }

    #[test]
    fn custom_templates_parse_and_bad_ones_are_refused() {
        let layout = Layout::parse("{artist}/{album} [{disc}]/{title}").unwrap();
        assert_eq!(
            layout.render(&tags("T", "A", "B", Some(1)), "f.flac"),
            ["A", "B", "T.flac"]
        );
        assert!(Layout::parse("{artist}/{nope}")
            .unwrap_err()
            .contains("unknown field"));
        assert!(Layout::parse("{artist}/[{album}").is_err());
        assert!(Layout::parse("{artist}//{title}").is_err());
    }

    #[test]
    fn names_are_safe() {
        assert_eq!(safe_name("AC/DC", "x"), "AC_DC");
        assert_eq!(safe_name("a\0b\x07c\n", "x"), "abc");
        assert_eq!(safe_name("..", "x"), "_..");
        assert_eq!(safe_name("   ", "Unknown"), "Unknown");
        let long = "é".repeat(300);
        let name = safe_file_name(&long, Some("flac"));
        assert!(
            name.len() <= NAME_MAX && name.ends_with(".flac"),
            "{} bytes",
            name.len()
        );
        assert_eq!(with_suffix("01 - Song.flac", 2), "01 - Song (2).flac");
        assert!(with_suffix(&name, 12).len() <= NAME_MAX);
    }
}
