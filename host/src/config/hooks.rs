//! `[[hooks]]`: whom to tell when the library changed (see `crate::hooks`).
//!
//! ```toml
//! [[hooks]]
//! type = "mpd"                 # or subsonic, jellyfin, plex, command
//! address = "127.0.0.1:6600"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A secret from the config: a password, a token, an API key. Never shown by
/// `Debug` (logs and errors print `<redacted>`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// One `[[hooks]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct HookConfig {
    /// How it is named in the log and `musicfs status` (`name = …`, else the type).
    pub name: String,
    /// Changes are gathered for this long after the first before the hook runs.
    pub debounce: Duration,
    /// Attempts after a failure (1 s, 2 s, 4 s, … apart, at most a minute).
    pub retries: u32,
    /// What it tells and how.
    pub target: HookTarget,
}

/// The kinds of hook.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum HookTarget {
    /// MPD: `update <folder>` per changed folder, relative to the mount (MPD's
    /// `music_directory`).
    Mpd {
        /// `host:port`, or the path of MPD's Unix socket.
        address: String,
        /// MPD's `password`, if it has one.
        password: Option<Secret>,
        /// Where the mount is inside MPD's `music_directory`, if it is a
        /// folder of it (`"MusicFS"`): put before every folder sent.
        prefix: Option<String>,
    },
    /// Subsonic API servers (Navidrome, Airsonic, gonic, Supysonic):
    /// `startScan`, logging in with `user` and `password` (a salted token,
    /// or the password where the server takes only that) or an
    /// OpenSubsonic `api_key`.
    Subsonic {
        url: String,
        user: Option<String>,
        password: Option<Secret>,
        api_key: Option<Secret>,
        /// How to log in (default: what the server takes).
        #[serde(default)]
        auth: SubsonicAuth,
    },
    /// Jellyfin: `POST /Library/Media/Updated` with the changed folders.
    Jellyfin {
        url: String,
        api_key: Secret,
        /// Where the server sees the mount (default: the mountpoint).
        library_path: Option<PathBuf>,
    },
    /// Plex: `GET /library/sections/<section>/refresh?path=<folder>` per folder;
    /// without a section, every section is refreshed.
    Plex {
        url: String,
        token: Secret,
        section: Option<u32>,
        /// Where the server sees the mount (default: the mountpoint).
        library_path: Option<PathBuf>,
    },
    /// A program, with the changed folders (absolute, on the mount) appended.
    Command {
        /// The program and its first arguments.
        command: Vec<String>,
    },
}

/// How a Subsonic hook logs in (`auth = …`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubsonicAuth {
    /// The API key if one is given; else a salted token, and the password
    /// if the server refuses tokens (learned once per hook).
    #[default]
    Auto,
    /// A salted token (`t`, `s`): the password never travels.
    Token,
    /// The password, hex-encoded (`p=enc:…`): servers that store only a
    /// hash of it (Supysonic, LDAP logins) take nothing else. Use HTTPS.
    Password,
    /// An OpenSubsonic API key (`apiKey`).
    ApiKey,
}

impl HookTarget {
    /// The type's name as the config spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            HookTarget::Mpd { .. } => "mpd",
            HookTarget::Subsonic { .. } => "subsonic",
            HookTarget::Jellyfin { .. } => "jellyfin",
            HookTarget::Plex { .. } => "plex",
            HookTarget::Command { .. } => "command",
        }
    }
}

/// The keys that hold [`Secret`]s.
const SECRET_KEYS: [&str; 3] = ["password", "token", "api_key"];

/// Reads one `[[hooks]]` table; `Err((key, message))` names the bad key.
pub(super) fn parse_hook(mut table: toml::Table) -> Result<HookConfig, (String, String)> {
    let mut take_u64 = |key: &str, default: u64| match table.remove(key) {
        None => Ok(default),
        Some(toml::Value::Integer(n)) if n >= 0 => Ok(n as u64),
        Some(other) => Err((
            key.to_owned(),
            format!("must be a whole number, found {other}"),
        )),
    };
    let debounce = Duration::from_millis(take_u64("debounce_ms", 2000)?);
    let retries = take_u64("retries", 5)?.min(u32::MAX as u64) as u32;
    let name = match table.remove("name") {
        None => None,
        Some(toml::Value::String(s)) if !s.is_empty() => Some(s),
        Some(_) => return Err(("name".into(), "must be a non-empty string".into())),
    };
    if !table.contains_key("type") {
        return Err(("type".into(), "missing in a [[hooks]] table".into()));
    }
    if let Some(auth) = table.get("auth") {
        let known = ["auto", "token", "password", "api_key"];
        if !auth.as_str().is_some_and(|a| known.contains(&a)) {
            let why = "must be \"auto\", \"token\", \"password\" or \"api_key\"";
            return Err(("auth".into(), why.into()));
        }
    }
    // Checked here, so that no error of the parser quotes a secret's value.
    for key in SECRET_KEYS {
        match table.get(key) {
            None | Some(toml::Value::String(_)) => {}
            Some(_) => return Err((key.into(), "must be a string (in quotes)".into())),
        }
        if let Some(toml::Value::String(secret)) = table.get(key) {
            if secret.chars().any(char::is_control) {
                let why = "must not hold control characters (a line break, say)";
                return Err((key.into(), why.into()));
            }
        }
    }
    let target: HookTarget = toml::Value::Table(table).try_into().map_err(|e| {
        let message = e.message().trim().to_owned();
        let key = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .unwrap_or("type")
            .to_owned();
        (key, message)
    })?;
    if let HookTarget::Command { command } = &target {
        if command.is_empty() {
            return Err(("command".into(), "needs at least the program".into()));
        }
    }
    if let HookTarget::Subsonic {
        user,
        password,
        api_key,
        auth,
        ..
    } = &target
    {
        let keyed = api_key.is_some();
        match auth {
            SubsonicAuth::ApiKey if !keyed => {
                return Err(("api_key".into(), "needed with auth = \"api_key\"".into()))
            }
            SubsonicAuth::Token | SubsonicAuth::Password | SubsonicAuth::Auto
                if !(keyed && *auth == SubsonicAuth::Auto) =>
            {
                if user.is_none() {
                    return Err(("user".into(), "needed (or an api_key)".into()));
                }
                if password.is_none() {
                    return Err(("password".into(), "needed with user (or an api_key)".into()));
                }
            }
            _ => {}
        }
    }
    Ok(HookConfig {
        name: name.unwrap_or_else(|| target.kind().to_owned()),
        debounce,
        retries,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(text: &str) -> Result<HookConfig, (String, String)> {
        parse_hook(toml::from_str(text).unwrap())
    }

    #[test]
    fn each_kind_reads() {
        let mpd = hook("type = \"mpd\"\naddress = \"127.0.0.1:6600\"\n").unwrap();
        assert_eq!(mpd.name, "mpd");
        assert_eq!(mpd.debounce, Duration::from_secs(2));
        assert_eq!(
            mpd.target,
            HookTarget::Mpd {
                address: "127.0.0.1:6600".into(),
                password: None,
                prefix: None,
            }
        );
        let plex = hook(
            "type = \"plex\"\nname = \"living room\"\nurl = \"http://h:32400\"\ntoken = \"t\"\nsection = 3\ndebounce_ms = 10\n",
        )
        .unwrap();
        assert_eq!(
            (plex.name.as_str(), plex.debounce),
            ("living room", Duration::from_millis(10))
        );
        let command = hook("type = \"command\"\ncommand = [\"notify\", \"-x\"]\n").unwrap();
        assert_eq!(command.target.kind(), "command");
    }

    #[test]
    fn mistakes_name_their_key() {
        let (key, message) = hook("type = \"mpd\"\nadress = \"x\"\n").unwrap_err();
        assert_eq!(key, "adress", "{message}");
        let (key, _) = hook("type = \"subsonic\"\nurl = \"http://x\"\nuser = \"u\"\n").unwrap_err();
        assert_eq!(key, "password");
        let (key, _) =
            hook("type = \"subsonic\"\nurl = \"http://x\"\nauth = \"api_key\"\n").unwrap_err();
        assert_eq!(key, "api_key");
        let (key, _) =
            hook("type = \"subsonic\"\nurl = \"http://x\"\nauth = \"tokens\"\n").unwrap_err();
        assert_eq!(key, "auth");
        let keyed = hook("type = \"subsonic\"\nurl = \"http://x\"\napi_key = \"k\"\n").unwrap();
        assert_eq!(keyed.target.kind(), "subsonic");
        let (key, message) = hook("type = \"kodi\"\n").unwrap_err();
        assert_eq!(key, "type", "{message}");
        let (key, _) = hook("address = \"x\"\n").unwrap_err();
        assert_eq!(key, "type");
        let (key, _) = hook("type = \"command\"\ncommand = []\n").unwrap_err();
        assert_eq!(key, "command");
        let (key, _) = hook("type = \"mpd\"\naddress = \"x\"\nretries = -1\n").unwrap_err();
        assert_eq!(key, "retries");
    }

    #[test]
    fn a_secret_of_the_wrong_type_or_with_a_line_break_is_refused_without_quoting_it() {
        let (key, message) =
            hook("type = \"plex\"\nurl = \"http://h\"\ntoken = 73519\n").unwrap_err();
        assert_eq!(key, "token");
        assert!(!message.contains("73519"), "{message}");
        let (key, message) =
            hook("type = \"mpd\"\naddress = \"x\"\npassword = \"pw\\nkill\"\n").unwrap_err();
        assert_eq!(key, "password");
        assert!(!message.contains("kill"), "{message}");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let hook =
            hook("type = \"jellyfin\"\nurl = \"http://h\"\napi_key = \"hunter2-key\"\n").unwrap();
        let shown = format!("{hook:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
