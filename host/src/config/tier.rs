//! `[tier]`: the shared tier, an S3-compatible bucket that several mounts of
//! one library share (see `crate::tier`).

use std::time::Duration;

use serde::Deserialize;

use super::hooks::Secret;

/// `[tier]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The S3 endpoint (`https://…`, or `http://…` on a trusted network).
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Where in the bucket the tier lives (several libraries can share one
    /// bucket under different prefixes).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The region the store answers to.
    #[serde(default = "default_region")]
    pub region: String,
    /// The access key.
    pub access_key_id: String,
    /// Its secret (never logged).
    pub secret_access_key: Secret,
    /// Whether this mount publishes what it fetched (false: a pure reader,
    /// as with read-only credentials).
    #[serde(default = "yes")]
    pub publish: bool,
    /// How long one request to the tier may take, in milliseconds, before
    /// the read goes on to the origin.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// How long a scan lease holds unless renewed, in seconds: a mount that
    /// dies mid-scan holds the others up this long at most.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// The most the tier's packs may hold, in GB (0: no limit). Mounts that
    /// publish sweep it, one at a time, least recently used first.
    #[serde(default)]
    pub size_limit_gb: f64,
    /// A pack younger than this is never swept (its manifest may not be
    /// written yet), nor an index segment or manifest tidied; a session or
    /// lease is tidied this long after it ended. In seconds.
    #[serde(default = "default_grace_secs")]
    pub grace_secs: u64,
    /// How often a mount looks whether the tier is over its limit, and
    /// tidies it, in seconds.
    #[serde(default = "default_sweep_secs")]
    pub sweep_every_secs: u64,
}

fn default_grace_secs() -> u64 {
    3600
}

fn default_sweep_secs() -> u64 {
    600
}

fn default_lease_secs() -> u64 {
    60
}

fn default_prefix() -> String {
    "musicfs".into()
}

fn default_region() -> String {
    "us-east-1".into()
}

fn yes() -> bool {
    true
}

/// Two calls (the manifest, then the first run) must leave the origin most
/// of a read's deadline (twice `[health] timeout_ms`, 10 s by default).
fn default_deadline_ms() -> u64 {
    2_000
}

impl TierConfig {
    /// [`TierConfig::deadline_ms`] as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// [`TierConfig::lease_secs`] as a duration (at least 3 s).
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(3))
    }

    /// Whether requests go in clear text.
    pub fn plain_http(&self) -> bool {
        self.endpoint.starts_with("http://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_secret_never_shows() {
        let config: TierConfig = toml::from_str(
            r#"endpoint = "http://127.0.0.1:3900"
bucket = "music"
access_key_id = "GK1"
secret_access_key = "very-secret-value""#,
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert_eq!(config.prefix, "musicfs");
        assert!(config.publish && config.plain_http());
    }
}
