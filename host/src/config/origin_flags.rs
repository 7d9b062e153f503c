//! `--origin KIND:LOCATION`: an origin from the command line, for a quick start
//! without a config file.
//!
//! `local:/srv/music` serves a folder. Any other kind gets the whole argument as its
//! `url` setting (`s3://bucket/prefix`, `sftp://user@host:22/music`), for its plugin
//! to parse. Ids are the kind (`local`, then `local-2`, …); priorities follow the
//! order given, after the config file's origins. The config file wins when both
//! define the same id.

use crate::config::OriginConfig;

/// Parses one `--origin` value; `taken` holds ids already used.
pub fn parse_origin_flag(
    flag: &str,
    taken: &[String],
    priority: i64,
) -> Result<OriginConfig, String> {
    let (kind, location) = flag
        .split_once(':')
        .filter(|(k, l)| !k.is_empty() && !l.is_empty())
        .ok_or_else(|| {
            format!("--origin {flag:?}: expected KIND:LOCATION, e.g. local:/srv/music")
        })?;
    let mut settings = toml::Table::new();
    if kind == "local" {
        let path = std::path::absolute(location).map_err(|e| format!("--origin {flag:?}: {e}"))?;
        settings.insert("path".into(), path.display().to_string().into());
    } else {
        settings.insert("url".into(), flag.into());
    }
    let mut id = kind.to_owned();
    let mut n = 1;
    while taken.contains(&id) {
        n += 1;
        id = format!("{kind}-{n}");
    }
    Ok(OriginConfig {
        id,
        kind: kind.to_owned(),
        priority,
        enabled: true,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_url_forms() {
        let o = parse_origin_flag("local:/srv/music", &[], 1).unwrap();
        assert_eq!((o.id.as_str(), o.kind.as_str()), ("local", "local"));
        assert_eq!(o.settings["path"].as_str(), Some("/srv/music"));
        let o = parse_origin_flag("local:/other", &["local".into()], 2).unwrap();
        assert_eq!(o.id, "local-2");
        let o = parse_origin_flag("s3://bucket/prefix", &[], 3).unwrap();
        assert_eq!(
            (o.kind.as_str(), o.settings["url"].as_str()),
            ("s3", Some("s3://bucket/prefix"))
        );
        assert!(parse_origin_flag("nonsense", &[], 1).is_err());
    }
}
