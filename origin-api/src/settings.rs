//! An origin's settings: its `[[origins]]` table from the host's config, less the keys
//! the host itself uses (`id`, `type`, `priority`, `enabled`).

use serde::de::DeserializeOwned;

use crate::{OriginError, OriginResult};

/// The settings of one origin, as a TOML table.
#[derive(Clone, PartialEq)]
pub struct Settings {
    origin_id: String,
    table: toml::Table,
}

impl Settings {
    /// Settings for origin `origin_id`.
    pub fn new(origin_id: impl Into<String>, table: toml::Table) -> Self {
        Settings {
            origin_id: origin_id.into(),
            table,
        }
    }

    /// The origin's id (`nas`, `backup`), for messages.
    pub fn origin_id(&self) -> &str {
        &self.origin_id
    }

    /// The raw table.
    pub fn table(&self) -> &toml::Table {
        &self.table
    }

    /// A string setting, or `None` when absent; an error names the key when it is
    /// present with another type.
    pub fn get_str(&self, key: &str) -> OriginResult<Option<&str>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    /// A string setting that must be present.
    pub fn require_str(&self, key: &str) -> OriginResult<&str> {
        self.get_str(key)?.ok_or_else(|| {
            OriginError::invalid_config(format!("origin `{}`: missing key `{key}`", self.origin_id))
        })
    }

    /// A boolean setting, or `None` when absent.
    pub fn get_bool(&self, key: &str) -> OriginResult<Option<bool>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, "true or false", other)),
        }
    }

    /// A non-negative integer setting, or `None` when absent.
    pub fn get_u64(&self, key: &str) -> OriginResult<Option<u64>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(other) => Err(self.wrong_type(key, "a non-negative integer", other)),
        }
    }

    /// An error naming the first key that is not one of `known` (a typo, or a
    /// setting of another kind of origin).
    pub fn only_keys(&self, known: &[&str]) -> OriginResult<()> {
        match self.table.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(OriginError::invalid_config(format!(
                "origin `{}`: unknown key `{unknown}` (known: {})",
                self.origin_id,
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// A TCP port setting (1 to 65535), or `None` when absent.
    pub fn get_port(&self, key: &str) -> OriginResult<Option<u16>> {
        match self.get_u64(key)? {
            None => Ok(None),
            Some(n) => u16::try_from(n)
                .ok()
                .filter(|p| *p > 0)
                .map(Some)
                .ok_or_else(|| {
                    OriginError::invalid_config(format!(
                        "origin `{}`: key `{key}` must be between 1 and 65535, not {n}",
                        self.origin_id
                    ))
                }),
        }
    }

    /// A duration in whole seconds (`poll_interval_secs`), `default` when
    /// absent, at least one second.
    pub fn get_secs(&self, key: &str, default: u64) -> OriginResult<std::time::Duration> {
        let secs = self.get_u64(key)?.unwrap_or(default).max(1);
        Ok(std::time::Duration::from_secs(secs))
    }

    /// The whole table as a typed struct (use `#[serde(deny_unknown_fields)]` to catch
    /// typos). Errors name the origin and what serde found wrong.
    pub fn deserialize<T: DeserializeOwned>(&self) -> OriginResult<T> {
        T::deserialize(toml::Value::Table(self.table.clone())).map_err(|err| {
            OriginError::invalid_config(format!("origin `{}`: {}", self.origin_id, err.message()))
        })
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &toml::Value) -> OriginError {
        OriginError::invalid_config(format!(
            "origin `{}`: key `{key}` must be {expected}, found {}",
            self.origin_id,
            found.type_str()
        ))
    }

    #[cfg_attr(not(feature = "host"), allow(dead_code))]
    pub(crate) fn to_toml(&self) -> String {
        toml::to_string(&self.table).unwrap_or_default()
    }

    pub(crate) fn from_toml(origin_id: &str, text: &str) -> OriginResult<Self> {
        let table = text.parse::<toml::Table>().map_err(|err| {
            OriginError::invalid_config(format!("origin `{origin_id}`: {}", err.message()))
        })?;
        Ok(Settings::new(origin_id, table))
    }
}

/// Only the key names: values may be secrets.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("origin_id", &self.origin_id)
            .field("keys", &self.table.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `host[:port]` of a URL, with IPv6 hosts in brackets (`[::1]:2049`); `None`
/// for a malformed one. The host may be empty; callers say whether that will do.
pub fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}
