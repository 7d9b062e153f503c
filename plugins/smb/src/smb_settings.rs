//! The SMB origin's settings, from its `[[origins]]` table or the quick form
//! `--origin smb://user@host[:port]/share[/folder]`.
//!
//! The password is kept out of `Debug` and logs: it appears as `<redacted>`.

use std::fmt;
use std::time::Duration;

use origin_api::{OriginError, OriginResult, Settings};

/// Everything needed to reach one library folder on one SMB share.
pub(crate) struct SmbSettings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) share: String,
    /// A folder inside the share, `/`-separated, no leading slash; empty for
    /// its root.
    pub(crate) path: String,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) domain: String,
    pub(crate) require_encryption: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) request_timeout: Duration,
}

impl fmt::Debug for SmbSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmbSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("share", &self.share)
            .field("path", &self.path)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("domain", &self.domain)
            .field("require_encryption", &self.require_encryption)
            .field("poll_interval", &self.poll_interval)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

const KEYS: &[&str] = &[
    "host",
    "port",
    "share",
    "path",
    "user",
    "password",
    "domain",
    "require_encryption",
    "poll_interval_secs",
    "request_timeout_secs",
    "url",
];

/// What `smb://user@host[:port]/share/folder` gives.
#[derive(Debug, Default, PartialEq, Eq)]
struct Url {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    share: Option<String>,
    path: String,
}

/// `smb://[user@]host[:port][/share[/folder]]`; `[v6]` hosts in brackets. A
/// password in the URL is refused (it would show in `ps` and shell history).
fn parse_url(url: &str) -> Option<Url> {
    let rest = url.strip_prefix("smb://")?;
    let (authority, rest) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, hp)) => (Some(user), hp),
        None => (None, authority),
    };
    if user.is_some_and(|u| u.is_empty() || u.contains(':')) {
        return None;
    }
    let (host, port) = origin_api::split_host_port(host_port)?;
    if host.is_empty() {
        return None;
    }
    let rest = rest.trim_matches('/');
    let (share, path) = match rest.split_once('/') {
        Some((share, path)) => (share, path.trim_matches('/')),
        None => (rest, ""),
    };
    Some(Url {
        user: user.map(str::to_owned),
        host: host.to_owned(),
        port,
        share: (!share.is_empty()).then(|| share.to_owned()),
        path: path.to_owned(),
    })
}

impl SmbSettings {
    pub(crate) fn parse(settings: &Settings) -> OriginResult<SmbSettings> {
        let id = settings.origin_id();
        settings.only_keys(KEYS)?;
        let url = match settings.get_str("url")? {
            Some(url) => parse_url(url).ok_or_else(|| {
                OriginError::invalid_config(format!(
                    "origin `{id}`: key `url` must look like smb://user@host[:port]/share[/folder] \
                     (the password goes in the `password` key, not the URL)"
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
        let share = match text("share")?.or(url.share.clone()) {
            Some(share) => share.trim_matches('/').to_owned(),
            None => settings.require_str("share")?.to_owned(),
        };
        if share.is_empty() || share.contains('/') || share.contains('\\') {
            return Err(OriginError::invalid_config(format!(
                "origin `{id}`: key `share` must be one share name, like music"
            )));
        }
        let path = match text("path")? {
            Some(path) => path.trim_matches('/').to_owned(),
            None => url.path.clone(),
        };
        let user = match text("user")?.or(url.user.clone()) {
            Some(user) => user,
            None => settings.require_str("user")?.to_owned(),
        };
        Ok(SmbSettings {
            host,
            port: settings.get_port("port")?.or(url.port).unwrap_or(445),
            share,
            path,
            user,
            password: text("password")?.unwrap_or_default(),
            domain: text("domain")?.unwrap_or_default(),
            require_encryption: settings.get_bool("require_encryption")?.unwrap_or(false),
            poll_interval: settings.get_secs("poll_interval_secs", 60)?,
            request_timeout: settings.get_secs("request_timeout_secs", 30)?,
        })
    }

    /// The path inside the share of an origin path.
    pub(crate) fn inside(&self, path: &str) -> String {
        match (self.path.is_empty(), path.is_empty()) {
            (true, _) => path.to_owned(),
            (false, true) => self.path.clone(),
            (false, false) => format!("{}/{path}", self.path),
        }
    }

    /// `host:port`, brackets around a v6 address.
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
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
    fn the_quick_form_gives_user_host_share_and_folder() {
        let s = SmbSettings::parse(&settings(&[(
            "url",
            text("smb://me@nas.local:4450/music/Lossless/"),
        )]))
        .unwrap();
        assert_eq!(
            (s.user.as_str(), s.host.as_str(), s.port),
            ("me", "nas.local", 4450)
        );
        assert_eq!((s.share.as_str(), s.path.as_str()), ("music", "Lossless"));
        assert_eq!(s.address(), "nas.local:4450");
        assert!(!s.require_encryption);
        let s = SmbSettings::parse(&settings(&[
            ("url", text("smb://me@[::1]/music")),
            ("password", text("pw")),
        ]))
        .unwrap();
        assert_eq!((s.address().as_str(), s.path.as_str()), ("[::1]:445", ""));
        for bad in [
            "http://x",
            "smb://",
            "smb://me:pw@h/music",
            "smb://@h/music",
            "smb://h:port/music",
        ] {
            let e = SmbSettings::parse(&settings(&[("url", text(bad))])).unwrap_err();
            assert!(!e.message().contains("pw"), "{e}");
        }
    }

    #[test]
    fn keys_name_what_is_wrong_and_the_password_never_shows() {
        let e =
            SmbSettings::parse(&settings(&[("host", text("h")), ("user", text("u"))])).unwrap_err();
        assert!(e.message().contains("`share`"), "{e}");
        let e = SmbSettings::parse(&settings(&[
            ("host", text("h")),
            ("user", text("u")),
            ("share", text("a/b")),
        ]))
        .unwrap_err();
        assert!(e.message().contains("`share`"), "{e}");
        let s = SmbSettings::parse(&settings(&[
            ("host", text("h")),
            ("user", text("u")),
            ("share", text("music")),
            ("path", text("/A/B/")),
            ("password", text("hunter2-secret")),
            ("require_encryption", true.into()),
        ]))
        .unwrap();
        assert_eq!(
            (s.inside(""), s.inside("c.flac")),
            ("A/B".into(), "A/B/c.flac".into())
        );
        assert!(s.require_encryption);
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
