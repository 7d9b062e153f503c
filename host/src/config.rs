//! The configuration file (TOML).
//!
//! Every error names the file, the line and the key. serde gives byte spans for
//! syntax and type errors; for the `[[origins]]` tables, whose plugin settings are
//! free-form, the host's own keys are checked by hand and located by searching the
//! table's span for `key =`.

pub mod hooks;
pub mod origin_flags;
pub mod tier;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// A configuration error, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The offending key, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where to mount, when not given on the command line.
    pub mount_point: Option<PathBuf>,
    /// Where the cache, the index and plugin copies live.
    pub cache_dir: Option<PathBuf>,
    /// The configured origins, in file order.
    pub origins: Vec<OriginConfig>,
    /// `[cache]`.
    pub cache: CacheConfig,
    /// `[health]`.
    pub health: HealthConfig,
    /// `[retry]`.
    pub retry: RetryConfig,
    /// `[library]`.
    pub library: LibraryConfig,
    /// `[[hooks]]`, in file order.
    pub hooks: Vec<hooks::HookConfig>,
    /// `[plugins]`.
    pub plugins: PluginsConfig,
    /// `[tier]`, if the mount shares a tier with others.
    pub tier: Option<tier::TierConfig>,
}

/// `[plugins]`: how plugin processes run (see `plugins::process`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// The most address space one plugin process may take, in MiB (0: no
    /// limit). Past it the plugin's allocations fail and its process is
    /// started again; without it the kernel's OOM killer takes plugin
    /// processes before the host.
    pub memory_limit_mb: u64,
    /// Confine plugin processes (no writes to files, no signals to others).
    pub sandbox: bool,
    /// Load plugins into the daemon instead of processes of their own: for
    /// measuring what the boundary costs and for debugging a plugin under a
    /// debugger. A plugin that crashes then ends the daemon and its mount.
    pub in_process: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            memory_limit_mb: 0,
            sandbox: true,
            in_process: false,
        }
    }
}

/// `[library]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LibraryConfig {
    /// The layout template (see `library::layout`).
    pub layout: String,
}

impl Default for LibraryConfig {
    fn default() -> Self {
        LibraryConfig {
            layout: crate::library::layout::DEFAULT_LAYOUT.to_owned(),
        }
    }
}

/// One `[[origins]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginConfig {
    /// Unique name.
    pub id: String,
    /// The plugin kind that serves it.
    pub kind: String,
    /// Lower wins.
    pub priority: i64,
    /// Disabled origins are not opened.
    pub enabled: bool,
    /// Everything else: the plugin's own settings.
    pub settings: toml::Table,
}

/// The kernel's read-ahead for the mount by default, in KiB. Measured with
/// `benches/mount.rs` and `benches/smb.rs`: chunk-cache reads gain 1.4x over
/// the kernel's 128 KiB at 1024 and little more at 4096, where cold SMB reads
/// lose a fifth.
pub const DEFAULT_READ_AHEAD_KB: u32 = 1024;

/// `[cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// The content cache's size limit, in GB.
    pub content_cache_gb: f64,
    /// The kernel's read-ahead for the mount, in KiB (set when running as
    /// root; see `fs::read_ahead`). 0 keeps the kernel's own.
    pub read_ahead_kb: u32,
    /// Whether fully cached files are read by the kernel from whole copies
    /// (as root; see `fs::passthrough`).
    pub passthrough: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            content_cache_gb: 10.0,
            read_ahead_kb: DEFAULT_READ_AHEAD_KB,
            passthrough: true,
        }
    }
}

/// `[health]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Seconds between health checks.
    pub check_interval_secs: u64,
    /// The deadline of one health check, and of every origin call.
    pub timeout_ms: u64,
    /// Consecutive failures before unhealthy, for every kind.
    pub unhealthy_threshold: Option<u32>,
    /// The same, per plugin kind.
    pub per_origin_thresholds: BTreeMap<String, u32>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            check_interval_secs: 30,
            timeout_ms: 5000,
            unhealthy_threshold: None,
            per_origin_thresholds: BTreeMap::new(),
        }
    }
}

impl HealthConfig {
    /// The unhealthy threshold for origins of `kind`, or `None` to use the plugin's
    /// class default.
    pub fn threshold_for(&self, kind: &str) -> Option<u32> {
        self.per_origin_thresholds
            .get(kind)
            .copied()
            .or(self.unhealthy_threshold)
    }

    /// The deadline of one origin call.
    pub fn call_deadline(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// The deadline of one read through the mount, failover and retries
    /// included: two call deadlines, room for one replica that hangs and one
    /// that answers.
    pub fn read_deadline(&self) -> Duration {
        self.call_deadline() * 2
    }
}

/// `[retry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Delays between attempts, in milliseconds.
    pub delays_ms: Vec<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            delays_ms: vec![100, 500, 2000],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mount_point: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    origins: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default)]
    health: HealthConfig,
    #[serde(default)]
    retry: RetryConfig,
    #[serde(default)]
    library: LibraryConfig,
    #[serde(default)]
    hooks: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    plugins: PluginsConfig,
    tier: Option<tier::TierConfig>,
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Checks `text`, naming `file` in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let located = Locator { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| located.serde_error(&e))?;
        let mut seen_ids = HashSet::new();
        let mut origins = Vec::new();
        for table in raw.origins {
            let span = table.span();
            let origin = located.origin(table.into_inner(), span.clone())?;
            if !seen_ids.insert(origin.id.clone()) {
                return Err(located.error(
                    span,
                    "id",
                    format!("duplicate origin id `{}`", origin.id),
                ));
            }
            origins.push(origin);
        }
        let mut hooks = Vec::new();
        for table in raw.hooks {
            let span = table.span();
            let hook = hooks::parse_hook(table.into_inner())
                .map_err(|(key, message)| located.error(span, &key, message))?;
            hooks.push(hook);
        }
        Ok(Config {
            hooks,
            mount_point: raw.mount_point,
            cache_dir: raw.cache_dir,
            origins,
            cache: raw.cache,
            health: raw.health,
            retry: raw.retry,
            library: raw.library,
            plugins: raw.plugins,
            tier: raw.tier,
        })
    }
}

struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The line of `key = …` in the table whose header starts at `span` (serde's span
    /// of an `[[origins]]` entry covers only its header), or the header's line.
    fn key_line(&self, span: &Range<usize>, key: &str) -> usize {
        let start = span.start.min(self.text.len());
        let mut offset = start;
        for (i, line) in self.text[start..].split_inclusive('\n').enumerate() {
            let trimmed = line.trim_start();
            if i > 0 && trimmed.starts_with('[') {
                break;
            }
            if let Some(rest) = trimmed.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return self.line_of(offset);
                }
            }
            offset += line.len();
        }
        self.line_of(start)
    }

    fn error(&self, span: Range<usize>, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line: Some(self.key_line(&span, key)),
            key: Some(key.to_owned()),
            message,
        }
    }

    fn serde_error(&self, err: &toml::de::Error) -> ConfigError {
        let message = err.message().trim().to_owned();
        let line = err.span().map(|s| self.line_of(s.start));
        let key = backticked(&message)
            .filter(|_| {
                message.starts_with("unknown field") || message.starts_with("missing field")
            })
            .or_else(|| {
                let span = err.span()?;
                let line_start = self.text[..span.start].rfind('\n').map_or(0, |i| i + 1);
                let line_text = self.text[line_start..].lines().next()?;
                let (key, _) = line_text.split_once('=')?;
                Some(key.trim().trim_matches('"').to_owned())
            });
        ConfigError {
            file: self.file.to_owned(),
            line,
            key,
            message,
        }
    }

    fn origin(
        &self,
        mut table: toml::Table,
        span: Range<usize>,
    ) -> Result<OriginConfig, ConfigError> {
        let take_str = |table: &mut toml::Table, key: &str| -> Result<String, ConfigError> {
            match table.remove(key) {
                Some(toml::Value::String(s)) if !s.is_empty() => Ok(s),
                Some(toml::Value::String(_)) => {
                    Err(self.error(span.clone(), key, "must not be empty".into()))
                }
                Some(other) => Err(self.error(
                    span.clone(),
                    key,
                    format!("must be a string, found {}", other.type_str()),
                )),
                None => {
                    Err(self.error(span.clone(), key, "missing in an [[origins]] table".into()))
                }
            }
        };
        let id = take_str(&mut table, "id")?;
        let kind = take_str(&mut table, "type")?;
        let priority = match table.remove("priority") {
            None => 100,
            Some(toml::Value::Integer(p)) => p,
            Some(other) => {
                return Err(self.error(
                    span,
                    "priority",
                    format!("must be an integer, found {}", other.type_str()),
                ))
            }
        };
        let enabled = match table.remove("enabled") {
            None => true,
            Some(toml::Value::Boolean(b)) => b,
            Some(other) => {
                return Err(self.error(
                    span,
                    "enabled",
                    format!("must be true or false, found {}", other.type_str()),
                ))
            }
        };
        Ok(OriginConfig {
            id,
            kind,
            priority,
            enabled,
            settings: table,
        })
    }
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("musicfs.toml"), text)
    }

    #[test]
    fn parses_the_design_example() {
        let config = parse(
            r#"
mount_point = "/mnt/music"
cache_dir = "~/.cache/musicfs"

[[origins]]
id = "nas"
type = "nfs"
priority = 1
host = "192.168.1.10"
export = "/music"

[[origins]]
id = "backup"
type = "s3"
priority = 2
bucket = "music-backup"
region = "eu-west-1"

[cache]
content_cache_gb = 10

[health]
check_interval_secs = 30
timeout_ms = 5000
[health.per_origin_thresholds]
local = 1
s3 = 3
"#,
        )
        .unwrap();
        assert_eq!(config.origins.len(), 2);
        assert_eq!(config.origins[0].id, "nas");
        assert_eq!(config.origins[0].kind, "nfs");
        assert_eq!(config.origins[0].priority, 1);
        assert!(config.origins[0].enabled);
        assert_eq!(
            config.origins[0].settings["export"].as_str(),
            Some("/music")
        );
        assert!(!config.origins[0].settings.contains_key("id"));
        assert_eq!(config.health.threshold_for("s3"), Some(3));
        assert_eq!(config.health.threshold_for("sftp"), None);
        assert_eq!(config.retry.delays_ms, [100, 500, 2000]);
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme
            .find("## Configuration")
            .expect("a Configuration section")..];
        let start = section.find("```toml\n").expect("a toml example") + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let config = parse(example).unwrap_or_else(|e| panic!("README example: {e}"));
        let ids: Vec<_> = config
            .origins
            .iter()
            .map(|o| (o.id.as_str(), o.priority))
            .collect();
        assert_eq!(ids, [("laptop", 1), ("nas", 2)]);
        assert_eq!(config.origins[1].kind, "nfs");
        assert_eq!(config.retry.delays_ms, [100, 500, 2000]);
    }

    #[test]
    fn the_readme_hooks_example_parses() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme
            .find("### Telling the music server")
            .expect("a hooks section")..];
        let start = section.find("```toml\n").expect("a toml example") + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let config = parse(example).unwrap_or_else(|e| panic!("README hooks example: {e}"));
        let kinds: Vec<_> = config.hooks.iter().map(|h| h.target.kind()).collect();
        assert_eq!(kinds, ["mpd", "subsonic", "jellyfin", "plex", "command"]);
    }

    #[test]
    fn a_typo_at_top_level_names_line_and_key() {
        let err = parse("mount_point = \"/m\"\n\ncahce_dir = \"/c\"\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("cahce_dir"));
        assert!(
            err.to_string()
                .starts_with("musicfs.toml:3: key `cahce_dir`"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_names_line_and_key() {
        let err = parse("[health]\ncheck_interval_secs = 30\ntimeout_ms = \"soon\"\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("timeout_ms"));
    }

    #[test]
    fn hook_errors_name_line_and_key() {
        let err = parse(
            "[[hooks]]\ntype = \"mpd\"\naddress = \"x\"\n\n[[hooks]]\ntype = \"plex\"\nurl = \"http://p\"\ntoekn = \"t\"\n",
        )
        .unwrap_err();
        assert_eq!(
            (err.line, err.key.as_deref()),
            (Some(8), Some("toekn")),
            "{err}"
        );
        let config = parse("[[hooks]]\ntype = \"mpd\"\naddress = \"x\"\n").unwrap();
        assert_eq!(config.hooks[0].target.kind(), "mpd");
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let err = parse("[[origins]]\nid = \"a\"\ntype = local\n").unwrap_err();
        assert_eq!(err.line, Some(3));
    }

    #[test]
    fn origin_errors_name_line_and_key() {
        let err =
            parse("[[origins]]\nid = \"a\"\ntype = \"local\"\npriority = \"high\"\n").unwrap_err();
        assert_eq!((err.line, err.key.as_deref()), (Some(4), Some("priority")));

        let err = parse("[[origins]]\nid = \"a\"\npath = \"/x\"\n").unwrap_err();
        assert_eq!((err.line, err.key.as_deref()), (Some(1), Some("type")));

        let err = parse(
            "[[origins]]\nid = \"a\"\ntype = \"local\"\n\n[[origins]]\nid = \"a\"\ntype = \"s3\"\n",
        )
        .unwrap_err();
        assert_eq!((err.line, err.key.as_deref()), (Some(6), Some("id")));
        assert!(err.message.contains("duplicate"));
    }
}
