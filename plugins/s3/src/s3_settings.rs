//! The S3 origin's settings, from its `[[origins]]` table or the quick form
//! `--origin s3://bucket/prefix` (the rest from the environment).
//!
//! Credentials are kept out of `Debug` and logs: they appear as `<redacted>`.

use std::fmt;
use std::time::Duration;

use origin_api::{OriginError, OriginResult, Settings};

/// Everything needed to reach one bucket.
pub(crate) struct S3Settings {
    pub(crate) bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the whole bucket.
    pub(crate) prefix: String,
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) virtual_hosted_style: bool,
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) session_token: Option<String>,
    pub(crate) allow_http: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) request_timeout: Duration,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("access_key_id", &redacted(&self.access_key_id))
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("poll_interval", &self.poll_interval)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

const KEYS: &[&str] = &[
    "bucket",
    "prefix",
    "region",
    "endpoint",
    "virtual_hosted_style",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
    "poll_interval_secs",
    "request_timeout_secs",
    "url",
];

impl S3Settings {
    pub(crate) fn parse(settings: &Settings) -> OriginResult<S3Settings> {
        settings.only_keys(KEYS)?;
        let (url_bucket, url_prefix) = match settings.get_str("url")? {
            Some(url) => {
                let (bucket, prefix) = parse_url(url).ok_or_else(|| {
                    OriginError::invalid_config(format!(
                        "origin `{}`: key `url` must look like s3://bucket/prefix",
                        settings.origin_id()
                    ))
                })?;
                (Some(bucket), prefix)
            }
            None => (None, None),
        };
        // `bucket` wins over the url's; one of them must be there.
        let bucket = match url_bucket {
            Some(b) if settings.get_str("bucket")?.is_none() => b,
            _ => settings.require_str("bucket")?.to_owned(),
        };
        let prefix = settings
            .get_str("prefix")?
            .map(str::to_owned)
            .or(url_prefix)
            .unwrap_or_default()
            .trim_matches('/')
            .to_owned();
        let text = |key: &str| settings.get_str(key).map(|v| v.map(str::to_owned));
        Ok(S3Settings {
            bucket,
            prefix,
            region: text("region")?,
            endpoint: text("endpoint")?,
            virtual_hosted_style: settings.get_bool("virtual_hosted_style")?.unwrap_or(false),
            access_key_id: text("access_key_id")?,
            secret_access_key: text("secret_access_key")?,
            session_token: text("session_token")?,
            allow_http: settings.get_bool("allow_http")?.unwrap_or(false),
            poll_interval: settings.get_secs("poll_interval_secs", 60)?,
            request_timeout: settings.get_secs("request_timeout_secs", 30)?,
        })
    }

    /// The object key of an origin path.
    pub(crate) fn key(&self, path: &str) -> String {
        match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{path}", self.prefix),
        }
    }

    /// The listing prefix of an origin folder (ends with `/`, or empty for the root
    /// of a whole bucket).
    pub(crate) fn dir_prefix(&self, dir: &str) -> String {
        let key = self.key(dir);
        if key.is_empty() {
            key
        } else {
            format!("{key}/")
        }
    }
}

/// `s3://bucket/some/prefix` → (bucket, prefix).
fn parse_url(url: &str) -> Option<(String, Option<String>)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    Some((
        bucket.to_owned(),
        Some(prefix.to_owned()).filter(|p| !p.is_empty()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let table = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), toml::Value::from(*v)))
            .collect();
        Settings::new("s3", table)
    }

    #[test]
    fn the_quick_form_gives_bucket_and_prefix() {
        let s = S3Settings::parse(&settings(&[("url", "s3://music/some/prefix/")])).unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.prefix.as_str()),
            ("music", "some/prefix")
        );
        assert_eq!(s.key("a/b.flac"), "some/prefix/a/b.flac");
        assert_eq!(s.dir_prefix(""), "some/prefix/");
        let s = S3Settings::parse(&settings(&[("url", "s3://music")])).unwrap();
        assert_eq!(
            (s.key("x"), s.dir_prefix("")),
            ("x".to_owned(), String::new())
        );
        assert!(S3Settings::parse(&settings(&[("url", "http://music")])).is_err());
    }

    #[test]
    fn bad_settings_name_the_key_and_secrets_stay_out_of_debug() {
        let err = S3Settings::parse(&settings(&[("prefix", "x")])).unwrap_err();
        assert!(err.message().contains("`bucket`"), "{err}");
        let err = S3Settings::parse(&settings(&[("bucket", "b"), ("secret", "x")])).unwrap_err();
        assert!(err.message().contains("unknown key `secret`"), "{err}");
        let s = S3Settings::parse(&settings(&[
            ("bucket", "b"),
            ("secret_access_key", "hunter2"),
            ("access_key_id", "AKID"),
        ]))
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("AKID"),
            "{shown}"
        );
    }
}
