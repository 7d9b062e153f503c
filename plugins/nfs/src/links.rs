//! Symbolic links, which an NFS client resolves itself: the server answers
//! READLINK with the link's text and LOOKUP never crosses a link. A link is
//! followed when its text leads inside the export: relative text from the
//! link's folder, absolute text below the export's path (for NFSv4 its pseudo
//! path, which servers usually make the server path). Anything else (a link
//! out of the export, past its root, or through more than [`MAX_LINKS`] links)
//! cannot be read through NFS and is left out of listings, as a dangling
//! link is.

/// NF3LNK and NF4LNK.
pub(crate) const TYPE_LNK: u32 = 5;
/// Links followed on one path before it counts as a loop (Linux allows 40).
pub(crate) const MAX_LINKS: usize = 16;

/// Where the link at `at` (a path from the export's root) whose text is
/// `text` leads, as a path from the export's root; `None` when it leads out
/// of the export whose path is `export`.
pub(crate) fn resolve(export: &str, at: &str, text: &str) -> Option<String> {
    let mut resolved: Vec<&str> = Vec::new();
    let rest = match text.strip_prefix('/') {
        Some(_) => {
            let export = export.trim_end_matches('/');
            match text.strip_prefix(export) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                _ => return None,
            }
        }
        None => {
            resolved.extend(at.split('/').filter(|s| !s.is_empty()));
            resolved.pop();
            text
        }
    };
    for segment in rest.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                resolved.pop()?;
            }
            name => resolved.push(name),
        }
    }
    Some(resolved.join("/"))
}

/// Whether a folder link in folder `dir` that leads to `to` (both from the
/// export's root) leads to that folder or one above it: a walk would repeat
/// the tree without end.
pub(crate) fn leads_up(dir: &str, to: &str) -> bool {
    to.is_empty() || dir == to || dir.starts_with(&format!("{to}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_text_is_read_from_the_links_folder() {
        assert_eq!(
            resolve("/srv", "a/b/link", "c.flac").as_deref(),
            Some("a/b/c.flac")
        );
        assert_eq!(
            resolve("/srv", "a/b/link", "../c/./d").as_deref(),
            Some("a/c/d")
        );
        assert_eq!(resolve("/srv", "link", "a//b/").as_deref(), Some("a/b"));
        assert_eq!(resolve("/srv", "a/link", "..").as_deref(), Some(""));
        assert_eq!(resolve("/srv", "a/link", "../../up"), None, "past the root");
    }

    #[test]
    fn absolute_text_is_read_against_the_export() {
        assert_eq!(
            resolve("/srv/music", "x", "/srv/music/a").as_deref(),
            Some("a")
        );
        assert_eq!(
            resolve("/srv/music/", "x", "/srv/music").as_deref(),
            Some("")
        );
        assert_eq!(resolve("/srv/music", "x", "/srv/musicals/a"), None);
        assert_eq!(resolve("/srv/music", "x", "/etc/passwd"), None);
        assert_eq!(resolve("/srv/music", "x", "/srv/music/../x"), None);
    }

    #[test]
    fn a_link_to_its_own_folder_or_above_leads_up() {
        assert!(leads_up("a/b", "a/b"));
        assert!(leads_up("a/b", "a"));
        assert!(leads_up("a/b", ""));
        assert!(!leads_up("a/b", "a/bc"));
        assert!(!leads_up("a", "a/b"));
        assert!(!leads_up("a/b", "c"));
    }
}
