//! The NFS origin's settings, from its `[[origins]]` table or the quick form
//! `--origin nfs://host[:port]/export[/sub/folder]`.
//!
//! For NFSv3 the export is its path on the server (`/srv/music`); for NFSv4
//! the pseudo path (`/music`). In the quick form the whole URL path is the
//! export; a folder inside it is `path`.

use std::time::Duration;

use origin_api::{OriginError, OriginResult, Settings};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V3,
    V4,
}

/// Everything needed to reach one library folder on one NFS export.
#[derive(Debug)]
pub(crate) struct NfsSettings {
    pub(crate) host: String,
    pub(crate) export: String,
    pub(crate) version: Version,
    /// The NFS port; `None`: 2049 for v4, the portmapper's answer for v3.
    pub(crate) port: Option<u16>,
    /// The v3 MOUNT port; `None`: the portmapper's answer.
    pub(crate) mount_port: Option<u16>,
    /// A folder inside the export, `/`-separated, no leading slash; empty
    /// for its root.
    pub(crate) path: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) privileged_port: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) request_timeout: Duration,
}

const KEYS: &[&str] = &[
    "host",
    "export",
    "version",
    "port",
    "mount_port",
    "path",
    "uid",
    "gid",
    "privileged_port",
    "poll_interval_secs",
    "request_timeout_secs",
    "url",
];

/// What `nfs://host[:port]/export` gives.
#[derive(Debug, Default, PartialEq, Eq)]
struct Url {
    host: String,
    port: Option<u16>,
    export: String,
}

/// `nfs://host[:port]/export`; `[v6]` hosts in brackets.
fn parse_url(url: &str) -> Option<Url> {
    let rest = url.strip_prefix("nfs://")?;
    let (authority, export) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = origin_api::split_host_port(authority)?;
    if host.is_empty() || authority.contains('@') {
        return None;
    }
    Some(Url {
        host: host.to_owned(),
        port,
        export: export.to_owned(),
    })
}

fn id_of(settings: &Settings, key: &str, default: u32) -> OriginResult<u32> {
    let id = settings.origin_id();
    match settings.get_u64(key)? {
        None => Ok(default),
        Some(n) => u32::try_from(n).map_err(|_| {
            OriginError::invalid_config(format!("origin `{id}`: key `{key}` is out of range: {n}"))
        }),
    }
}

impl NfsSettings {
    pub(crate) fn parse(settings: &Settings) -> OriginResult<NfsSettings> {
        let id = settings.origin_id();
        settings.only_keys(KEYS)?;
        let url = match settings.get_str("url")? {
            Some(url) => parse_url(url).ok_or_else(|| {
                OriginError::invalid_config(format!(
                    "origin `{id}`: key `url` must look like nfs://host[:port]/export"
                ))
            })?,
            None => Url::default(),
        };
        let text = |key: &str| settings.get_str(key).map(|v| v.map(str::to_owned));
        let host = match text("host")? {
            Some(host) => host,
            None if !url.host.is_empty() => url.host.clone(),
            None => settings.require_str("host")?.to_owned(),
        };
        let export = match text("export")? {
            Some(export) => export,
            None if !url.export.is_empty() => url.export.clone(),
            None => settings.require_str("export")?.to_owned(),
        };
        if !export.starts_with('/') {
            return Err(OriginError::invalid_config(format!(
                "origin `{id}`: key `export` must be a path from the server's root, like /srv/music"
            )));
        }
        let version = match settings.get_u64("version")? {
            None | Some(3) => Version::V3,
            Some(4) => Version::V4,
            Some(other) => {
                return Err(OriginError::invalid_config(format!(
                    "origin `{id}`: key `version` must be 3 or 4, not {other}"
                )))
            }
        };
        let path = text("path")?
            .unwrap_or_default()
            .trim_matches('/')
            .to_owned();
        // SAFETY: getuid and getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Ok(NfsSettings {
            host,
            export,
            version,
            port: settings.get_port("port")?.or(url.port),
            mount_port: settings.get_port("mount_port")?,
            path,
            uid: id_of(settings, "uid", uid)?,
            gid: id_of(settings, "gid", gid)?,
            privileged_port: settings.get_bool("privileged_port")?.unwrap_or(false),
            poll_interval: settings.get_secs("poll_interval_secs", 60)?,
            request_timeout: settings.get_secs("request_timeout_secs", 30)?,
        })
    }

    /// The export's path inside it of an origin path, `/`-separated, from the
    /// export's root.
    pub(crate) fn inside(&self, path: &str) -> String {
        match (self.path.is_empty(), path.is_empty()) {
            (true, _) => path.to_owned(),
            (false, true) => self.path.clone(),
            (false, false) => format!("{}/{path}", self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, toml::Value)]) -> Settings {
        let table = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Settings::new("nas", table)
    }

    fn text(v: &str) -> toml::Value {
        toml::Value::from(v)
    }

    #[test]
    fn the_quick_form_gives_host_port_and_export() {
        let s = NfsSettings::parse(&settings(&[(
            "url",
            text("nfs://nas.local:2050/srv/music"),
        )]))
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.export.as_str(), s.version),
            ("nas.local", Some(2050), "/srv/music", Version::V3)
        );
        assert_eq!((s.mount_port, s.privileged_port), (None, false));
        assert_eq!(s.request_timeout.as_secs(), 30);
        let s = NfsSettings::parse(&settings(&[("url", text("nfs://[::1]"))])).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.export.as_str()),
            ("::1", None, "/")
        );
        for bad in ["http://x", "nfs://", "nfs://h:port/x", "nfs://u@h/x"] {
            assert!(
                NfsSettings::parse(&settings(&[("url", text(bad))])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_name_what_is_wrong() {
        let e = NfsSettings::parse(&settings(&[
            ("host", text("h")),
            ("export", text("/x")),
            ("version", 2.into()),
        ]))
        .unwrap_err();
        assert!(e.message().contains("`version`"), "{e}");
        let e = NfsSettings::parse(&settings(&[("host", text("h"))])).unwrap_err();
        assert!(e.message().contains("export"), "{e}");
        let e = NfsSettings::parse(&settings(&[("host", text("h")), ("export", text("x"))]))
            .unwrap_err();
        assert!(e.message().contains("`export`"), "{e}");
        let s = NfsSettings::parse(&settings(&[
            ("host", text("h")),
            ("export", text("/x")),
            ("path", text("/A/B/")),
            ("uid", 1000.into()),
            ("version", 4.into()),
        ]))
        .unwrap();
        assert_eq!(
            (s.inside(""), s.inside("c.flac")),
            ("A/B".into(), "A/B/c.flac".into())
        );
        assert_eq!((s.uid, s.version), (1000, Version::V4));
    }
}
