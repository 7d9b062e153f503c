//! The SFTP origin's settings, from its `[[origins]]` table or the quick form
//! `--origin sftp://user@host:port/path` (the rest from defaults).
//!
//! Secrets (`password`, `private_key_passphrase`) are kept out of `Debug` and
//! logs: they appear as `<redacted>`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use origin_api::{OriginError, OriginResult, Settings};

/// Everything needed to reach one library folder on one SSH server.
pub(crate) struct SftpSettings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    /// The library folder on the server; empty for the login folder.
    pub(crate) path: String,
    pub(crate) private_key: Option<PathBuf>,
    pub(crate) private_key_passphrase: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) use_agent: bool,
    /// With no way to log in configured, what `ssh` would try: the usual key
    /// files in `~/.ssh` that exist (those without a passphrase work).
    pub(crate) default_keys: Vec<PathBuf>,
    pub(crate) known_hosts: PathBuf,
    /// A pinned host key, `SHA256:…` as `ssh-keygen -l` prints it.
    pub(crate) host_key_fingerprint: Option<String>,
    pub(crate) connections: usize,
    pub(crate) poll_interval: Duration,
    pub(crate) request_timeout: Duration,
}

impl fmt::Debug for SftpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("SftpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("path", &self.path)
            .field("private_key", &self.private_key)
            .field(
                "private_key_passphrase",
                &redacted(&self.private_key_passphrase),
            )
            .field("password", &redacted(&self.password))
            .field("use_agent", &self.use_agent)
            .field("default_keys", &self.default_keys)
            .field("known_hosts", &self.known_hosts)
            .field("host_key_fingerprint", &self.host_key_fingerprint)
            .field("connections", &self.connections)
            .field("poll_interval", &self.poll_interval)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

const KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "path",
    "private_key",
    "private_key_passphrase",
    "password",
    "use_agent",
    "known_hosts",
    "host_key_fingerprint",
    "connections",
    "poll_interval_secs",
    "request_timeout_secs",
    "url",
];

/// What `sftp://user@host:port/path` gives.
#[derive(Debug, Default, PartialEq, Eq)]
struct Url {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    path: Option<String>,
}

/// Whether `url` is `sftp://user:password@…`.
fn has_password(url: &str) -> bool {
    let rest = url.strip_prefix("sftp://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
}

/// `sftp://[user@]host[:port][/path]`; `[v6]` hosts are written in brackets.
/// The path is absolute, `/~/path` is below the login folder, none is the
/// login folder itself.
fn parse_url(url: &str) -> Option<Url> {
    let rest = url.strip_prefix("sftp://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, hp)) => (Some(user), hp),
        None => (None, authority),
    };
    let (host, port) = origin_api::split_host_port(host_port)?;
    if host.is_empty() || user.is_some_and(str::is_empty) {
        return None;
    }
    Some(Url {
        user: user.map(str::to_owned),
        host: host.to_owned(),
        port,
        path: path.map(|p| match p.strip_prefix('~') {
            // `/~/music`: below the login folder (as curl reads it).
            Some(below) => below.trim_matches('/').to_owned(),
            None => format!("/{}", p.trim_matches('/')),
        }),
    })
}

/// The current user's name, for a login with none given: `$USER`, or the
/// password database's entry for this process's uid.
fn current_user() -> Option<String> {
    if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return Some(user);
    }
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the size given.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points into `buf`, NUL-terminated.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
    name.to_str()
        .ok()
        .map(str::to_owned)
        .filter(|n| !n.is_empty())
}

/// The key files `ssh` tries by default that exist in `home`/.ssh.
fn usual_keys(home: &Path) -> Vec<PathBuf> {
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| home.join(".ssh").join(name))
        .filter(|path| path.is_file())
        .collect()
}

impl SftpSettings {
    pub(crate) fn parse(settings: &Settings) -> OriginResult<SftpSettings> {
        let id = settings.origin_id();
        settings.only_keys(KEYS)?;
        let url = match settings.get_str("url")? {
            Some(url) if has_password(url) => {
                return Err(OriginError::invalid_config(format!(
                    "origin `{id}`: key `url` holds a password; give it as `password` \
                     instead (a URL is shown in logs and status)"
                )))
            }
            Some(url) => parse_url(url).ok_or_else(|| {
                OriginError::invalid_config(format!(
                    "origin `{id}`: key `url` must look like sftp://user@host:port/path"
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
        let port = settings.get_port("port")?.or(url.port).unwrap_or(22);
        let user = text("user")?
            .or(url.user)
            .or_else(current_user)
            .ok_or_else(|| {
                OriginError::invalid_config(format!(
                    "origin `{id}`: key `user` is missing and the current user is unknown"
                ))
            })?;
        let path = text("path")?.or(url.path).unwrap_or_default();
        // `/` stays the server's root; `music/` is `music`.
        let path = match path.trim_end_matches('/') {
            "" if path.starts_with('/') => "/".to_owned(),
            trimmed => trimmed.to_owned(),
        };
        let known_hosts = match text("known_hosts")? {
            Some(file) => PathBuf::from(file),
            None => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".ssh/known_hosts"))
                .ok_or_else(|| {
                    OriginError::invalid_config(format!(
                        "origin `{id}`: key `known_hosts` is missing and there is no $HOME"
                    ))
                })?,
        };
        let host_key_fingerprint = text("host_key_fingerprint")?;
        if let Some(pin) = &host_key_fingerprint {
            if !pin.starts_with("SHA256:") {
                return Err(OriginError::invalid_config(format!(
                    "origin `{id}`: key `host_key_fingerprint` must be `SHA256:…` as \
                     `ssh-keygen -l` prints it"
                )));
            }
        }
        let connections = settings.get_u64("connections")?.unwrap_or(4);
        if !(1..=64).contains(&connections) {
            return Err(OriginError::invalid_config(format!(
                "origin `{id}`: key `connections` must be between 1 and 64, not {connections}"
            )));
        }
        let private_key = text("private_key")?.map(PathBuf::from);
        let password = text("password")?;
        let agent = settings.get_bool("use_agent")?;
        // Nothing configured (the `--origin sftp://…` form): do as `ssh` does,
        // the agent if one runs, then the usual key files.
        let nothing_set = private_key.is_none() && password.is_none() && agent.is_none();
        let use_agent = agent.unwrap_or(nothing_set && std::env::var_os("SSH_AUTH_SOCK").is_some());
        let default_keys = match std::env::var_os("HOME") {
            Some(home) if nothing_set => usual_keys(Path::new(&home)),
            _ => Vec::new(),
        };
        Ok(SftpSettings {
            host,
            port,
            user,
            path,
            private_key,
            private_key_passphrase: text("private_key_passphrase")?,
            password,
            use_agent,
            default_keys,
            known_hosts,
            host_key_fingerprint,
            connections: connections as usize,
            poll_interval: settings.get_secs("poll_interval_secs", 60)?,
            request_timeout: settings.get_secs("request_timeout_secs", 30)?,
        })
    }

    /// The server path of an origin path.
    pub(crate) fn remote(&self, path: &str) -> String {
        match (self.path.is_empty(), path.is_empty()) {
            (true, true) => ".".to_owned(),
            (true, false) => path.to_owned(),
            (false, true) => self.path.clone(),
            (false, false) if self.path == "/" => format!("/{path}"),
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
        Settings::new("seedbox", table)
    }

    fn text(v: &str) -> toml::Value {
        toml::Value::from(v)
    }

    #[test]
    fn the_quick_form_gives_user_host_port_and_path() {
        let s = SftpSettings::parse(&settings(&[(
            "url",
            text("sftp://ann@box.example:2222/srv/music/"),
        )]))
        .unwrap();
        assert_eq!(
            (s.user.as_str(), s.host.as_str(), s.port, s.path.as_str()),
            ("ann", "box.example", 2222, "/srv/music")
        );
        assert_eq!(s.remote("A/b.flac"), "/srv/music/A/b.flac");
        assert_eq!(s.remote(""), "/srv/music");
        let s = SftpSettings::parse(&settings(&[("url", text("sftp://box/~/music"))])).unwrap();
        assert_eq!(s.remote("A/b.flac"), "music/A/b.flac");
        let s = SftpSettings::parse(&settings(&[("url", text("sftp://box/"))])).unwrap();
        assert_eq!(s.remote("A"), "/A");
        assert_eq!((s.connections, s.request_timeout.as_secs()), (4, 30));
        let s = SftpSettings::parse(&settings(&[("url", text("sftp://ann@[::1]"))])).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.remote("")),
            ("::1", 22, ".".to_owned())
        );
        let leaked = SftpSettings::parse(&settings(&[("url", text("sftp://ann:hunter2@box/m"))]))
            .unwrap_err();
        assert!(
            leaked.message().contains("password") && !leaked.message().contains("hunter2"),
            "{leaked}"
        );
        for bad in [
            "http://x",
            "sftp://",
            "sftp://@h",
            "sftp://h:port",
            "sftp://[::1",
        ] {
            assert!(
                SftpSettings::parse(&settings(&[("url", text(bad))])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn with_nothing_configured_the_usual_keys_are_tried() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        std::fs::write(home.path().join(".ssh/id_rsa"), "").unwrap();
        std::fs::write(home.path().join(".ssh/id_ed25519"), "").unwrap();
        assert_eq!(
            usual_keys(home.path()),
            [
                home.path().join(".ssh/id_ed25519"),
                home.path().join(".ssh/id_rsa")
            ]
        );
        let s = SftpSettings::parse(&settings(&[
            ("host", text("h")),
            ("password", text("swordfish")),
        ]))
        .unwrap();
        assert!(s.default_keys.is_empty() && !s.use_agent);
    }

    #[test]
    fn the_login_defaults_to_the_current_user() {
        let s = SftpSettings::parse(&settings(&[("host", text("h"))])).unwrap();
        assert!(!s.user.is_empty());
    }

    #[test]
    fn keys_win_over_the_url() {
        let s = SftpSettings::parse(&settings(&[
            ("url", text("sftp://ann@box:2222/a")),
            ("user", text("bob")),
            ("port", toml::Value::from(22i64)),
            ("path", text("b")),
        ]))
        .unwrap();
        assert_eq!((s.user.as_str(), s.port, s.path.as_str()), ("bob", 22, "b"));
    }

    #[test]
    fn bad_settings_name_the_key_and_secrets_stay_out_of_debug() {
        let err = SftpSettings::parse(&settings(&[("user", text("a"))])).unwrap_err();
        assert!(err.message().contains("`host`"), "{err}");
        let err = SftpSettings::parse(&settings(&[("host", text("h")), ("passwd", text("x"))]))
            .unwrap_err();
        assert!(err.message().contains("unknown key `passwd`"), "{err}");
        let err = SftpSettings::parse(&settings(&[
            ("host", text("h")),
            ("port", toml::Value::from(70000i64)),
        ]))
        .unwrap_err();
        assert!(err.message().contains("`port`"), "{err}");
        let err = SftpSettings::parse(&settings(&[
            ("host", text("h")),
            ("user", text("u")),
            ("host_key_fingerprint", text("ab:cd")),
        ]))
        .unwrap_err();
        assert!(err.message().contains("SHA256:"), "{err}");
        let s = SftpSettings::parse(&settings(&[
            ("host", text("h")),
            ("user", text("u")),
            ("password", text("hunter2")),
            ("private_key_passphrase", text("swordfish")),
        ]))
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("swordfish"),
            "{shown}"
        );
    }
}
