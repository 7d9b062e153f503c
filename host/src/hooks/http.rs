//! The HTTP hooks, each by its server's documented API:
//!
//! - Subsonic (Navidrome, Airsonic, gonic, Supysonic): `GET /rest/startScan`.
//!   Servers differ in the logins they take, so the hook picks what the
//!   server accepts: an OpenSubsonic API key (`apiKey`) when one is
//!   configured; else token authentication (`t` = MD5 of password and salt,
//!   `s` = the salt), so the password itself never travels; and if the
//!   server answers that with "a required parameter is missing" (10, the
//!   password it wanted), "token authentication not supported" (41) or
//!   "authentication mechanism not supported" (42), the password,
//!   hex-encoded (`p=enc:…`, the API's own form; it is not encryption), and
//!   the hook remembers it; only over HTTPS or to this machine, though: over
//!   plain HTTP to another the hook fails saying so. `auth = "token" |
//!   "password" | "api_key"` fixes one.
//! - Jellyfin: `POST /Library/Media/Updated` with
//!   `{"Updates":[{"Path":…,"UpdateType":"Modified"}]}` and the API key in
//!   `Authorization: MediaBrowser Token="…"`.
//! - Plex: `GET /library/sections/<section>/refresh?path=<folder>` per folder
//!   (a partial scan), the token in `X-Plex-Token`; without a section,
//!   `GET /library/sections/all/refresh`.
//!
//! Errors name the method and path only: queries and headers carry secrets.

use std::path::PathBuf;
use std::time::Duration;

use md5::Digest;
use reqwest::{Client, Method, Url};

use crate::config::hooks::{Secret, SubsonicAuth};

/// The Subsonic API version asked for (token authentication came in 1.13).
const SUBSONIC_API: &str = "1.16.1";

/// The client of one hook. It follows no redirect: a redirect would carry
/// the query (Subsonic's token) and headers such as `X-Plex-Token` to
/// wherever it points.
pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("musicfs/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| {
            tracing::warn!("hooks: the HTTP client's settings failed ({e}); using the defaults");
            Client::new()
        })
}

/// A header value that holds a secret: marked so that nothing prints it.
fn secret_header(value: String) -> Result<reqwest::header::HeaderValue, String> {
    let mut value = reqwest::header::HeaderValue::try_from(value)
        .map_err(|_| "a secret holds characters a header cannot".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// `base` with `segments` appended to its path.
fn endpoint(base: &str, segments: &[&str]) -> Result<Url, String> {
    let mut url = Url::parse(base).map_err(|e| format!("bad url {base:?}: {e}"))?;
    url.path_segments_mut()
        .map_err(|_| format!("bad url {base:?}: it cannot have a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Sends `request`; a status other than 2xx is an error. Returns the body.
async fn send(client: &Client, request: reqwest::RequestBuilder) -> Result<String, String> {
    let (what, status, body) = exchange(client, request).await?;
    if !status.is_success() {
        let said: String = body.trim().chars().take(200).collect();
        return Err(format!("{what}: HTTP {status} {said}"));
    }
    Ok(body)
}

/// Sends `request`: what it was (method and path), the status and the body.
async fn exchange(
    client: &Client,
    request: reqwest::RequestBuilder,
) -> Result<(String, reqwest::StatusCode, String), String> {
    let request = request.build().map_err(|e| e.without_url().to_string())?;
    let what = format!("{} {}", request.method(), request.url().path());
    let response = client
        .execute(request)
        .await
        .map_err(|e| format!("{what}: {}", e.without_url()))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Ok((what, status, body))
}

/// A Subsonic hook's login, as configured.
pub struct SubsonicCredentials<'a> {
    pub user: Option<&'a str>,
    pub password: Option<&'a Secret>,
    pub api_key: Option<&'a Secret>,
    pub auth: SubsonicAuth,
}

/// How a Subsonic server took a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubsonicLogin {
    Token,
    Password,
    ApiKey,
}

/// A Subsonic error answer: its code and message.
#[derive(Debug)]
struct SubsonicError {
    code: i64,
    message: String,
}

/// Subsonic `startScan`, logging in as the server takes it (see the
/// module's essay); `learned` keeps what worked for the next time.
pub async fn subsonic(
    client: &Client,
    url: &str,
    credentials: &SubsonicCredentials<'_>,
    learned: &std::sync::Mutex<Option<SubsonicLogin>>,
) -> Result<(), String> {
    let known = *learned.lock().unwrap_or_else(|p| p.into_inner());
    let first = match credentials.auth {
        SubsonicAuth::Token => SubsonicLogin::Token,
        SubsonicAuth::Password => SubsonicLogin::Password,
        SubsonicAuth::ApiKey => SubsonicLogin::ApiKey,
        SubsonicAuth::Auto if credentials.api_key.is_some() => SubsonicLogin::ApiKey,
        SubsonicAuth::Auto => known.unwrap_or(SubsonicLogin::Token),
    };
    let outcome = match start_scan(client, url, credentials, first).await? {
        Err(refused)
            if first == SubsonicLogin::Token
                && credentials.auth == SubsonicAuth::Auto
                && matches!(refused.code, 10 | 41 | 42)
                && !password_safe_to(url) =>
        {
            return Err(format!(
                "GET /rest/startScan: the server takes no token login ({}); the password is not sent over plain HTTP to another machine: use https, or set auth = \"password\"",
                refused.message
            ));
        }
        Err(refused)
            if first == SubsonicLogin::Token
                && credentials.auth == SubsonicAuth::Auto
                && matches!(refused.code, 10 | 41 | 42) =>
        {
            tracing::info!(
                url,
                "the Subsonic server does not take a token login ({}): sending the password (hex-encoded, as the API has it; use HTTPS to it)",
                refused.message
            );
            start_scan(client, url, credentials, SubsonicLogin::Password)
                .await?
                .map(|()| SubsonicLogin::Password)
        }
        other => other.map(|()| first),
    };
    match outcome {
        Ok(login) => {
            *learned.lock().unwrap_or_else(|p| p.into_inner()) = Some(login);
            Ok(())
        }
        Err(refused) => Err(format!(
            "GET /rest/startScan: {} (error {})",
            refused.message, refused.code
        )),
    }
}

/// Whether `auto` may send the password itself to `url`: over HTTPS, or to
/// this machine (where nothing is on the wire).
fn password_safe_to(url: &str) -> bool {
    let Ok(url) = Url::parse(url) else {
        return false;
    };
    let host = url.host_str().unwrap_or("");
    url.scheme() == "https"
        || host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One `startScan` with `login`: `Ok(Err(..))` if the server answered with
/// an error, `Err` if it did not answer as a Subsonic server.
async fn start_scan(
    client: &Client,
    url: &str,
    credentials: &SubsonicCredentials<'_>,
    login: SubsonicLogin,
) -> Result<Result<(), SubsonicError>, String> {
    let mut endpoint = endpoint(url, &["rest", "startScan"])?;
    {
        let mut query = endpoint.query_pairs_mut();
        let missing = |what: &str| format!("the hook has no {what} for a {login:?} login");
        match login {
            SubsonicLogin::ApiKey => {
                let key = credentials.api_key.ok_or_else(|| missing("api_key"))?;
                query.append_pair("apiKey", key.expose());
            }
            SubsonicLogin::Token | SubsonicLogin::Password => {
                let user = credentials.user.ok_or_else(|| missing("user"))?;
                let password = credentials.password.ok_or_else(|| missing("password"))?;
                query.append_pair("u", user);
                if login == SubsonicLogin::Token {
                    let salt = salt();
                    let token = hex(&md5::Md5::digest(format!("{}{salt}", password.expose())));
                    query.append_pair("t", &token).append_pair("s", &salt);
                } else {
                    let encoded = format!("enc:{}", hex(password.expose().as_bytes()));
                    query.append_pair("p", &encoded);
                }
            }
        }
        query
            .append_pair("v", SUBSONIC_API)
            .append_pair("c", "musicfs")
            .append_pair("f", "json");
    }
    // The API answers with a status inside, most servers with HTTP 200
    // whatever it is, some with 400 or 401: the body says which.
    let (what, status, body) = exchange(client, client.request(Method::GET, endpoint)).await?;
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let response = &answer["subsonic-response"];
    match response["status"].as_str() {
        Some("ok") if status.is_success() => Ok(Ok(())),
        Some(_) => Ok(Err(SubsonicError {
            code: response["error"]["code"].as_i64().unwrap_or(0),
            message: response["error"]["message"]
                .as_str()
                .unwrap_or("the server said it failed")
                .to_owned(),
        })),
        _ => {
            let said: String = body.trim().chars().take(200).collect();
            Err(format!(
                "{what}: HTTP {status}, not a Subsonic answer: {said}"
            ))
        }
    }
}

/// Jellyfin `POST /Library/Media/Updated`.
pub async fn jellyfin(
    client: &Client,
    url: &str,
    api_key: &Secret,
    folders: &[PathBuf],
) -> Result<(), String> {
    let updates: Vec<serde_json::Value> = folders
        .iter()
        .map(|f| serde_json::json!({ "Path": f.to_string_lossy(), "UpdateType": "Modified" }))
        .collect();
    let body = serde_json::json!({ "Updates": updates }).to_string();
    let request = client
        .request(
            Method::POST,
            endpoint(url, &["Library", "Media", "Updated"])?,
        )
        .header(
            reqwest::header::AUTHORIZATION,
            secret_header(format!("MediaBrowser Token=\"{}\"", api_key.expose()))?,
        )
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    send(client, request).await.map(drop)
}

/// Plex partial scans, or a refresh of every section.
pub async fn plex(
    client: &Client,
    url: &str,
    token: &Secret,
    section: Option<u32>,
    folders: &[PathBuf],
) -> Result<(), String> {
    let token = secret_header(token.expose().to_owned())?;
    let get = |endpoint: Url| {
        client
            .request(Method::GET, endpoint)
            .header("X-Plex-Token", token.clone())
            .header(reqwest::header::ACCEPT, "application/json")
    };
    let Some(section) = section else {
        return send(
            client,
            get(endpoint(url, &["library", "sections", "all", "refresh"])?),
        )
        .await
        .map(drop);
    };
    let section = section.to_string();
    for folder in folders {
        let mut endpoint = endpoint(url, &["library", "sections", &section, "refresh"])?;
        endpoint
            .query_pairs_mut()
            .append_pair("path", &folder.to_string_lossy());
        send(client, get(endpoint)).await?;
    }
    Ok(())
}

/// A fresh salt for a Subsonic token: unique per request, not secret.
fn salt() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!("{now}-{n}-{}", std::process::id());
    hex(&blake3::hash(seed.as_bytes()).as_bytes()[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subsonic_token_is_md5_of_password_and_salt() {
        // The Subsonic API documentation's example: password "sesame", salt
        // "c19b2d" give token "26719a1196d2a940705a59634eb18eab".
        assert_eq!(
            hex(&md5::Md5::digest("sesamec19b2d")),
            "26719a1196d2a940705a59634eb18eab"
        );
        assert_ne!(salt(), salt());
    }

    #[test]
    fn auto_sends_a_password_only_over_https_or_to_this_machine() {
        assert!(password_safe_to("https://music.example.net/"));
        assert!(password_safe_to("http://127.0.0.1:4533"));
        assert!(password_safe_to("http://localhost:4533"));
        assert!(password_safe_to("http://[::1]:4533"));
        assert!(!password_safe_to("http://192.168.1.10:4533"));
        assert!(!password_safe_to("http://nas.lan:4533"));
    }

    #[test]
    fn endpoints_keep_the_base_path() {
        assert_eq!(
            endpoint("http://h:4533/navidrome/", &["rest", "startScan"])
                .unwrap()
                .as_str(),
            "http://h:4533/navidrome/rest/startScan"
        );
        assert_eq!(
            endpoint("http://h:8096", &["Library", "Media", "Updated"])
                .unwrap()
                .as_str(),
            "http://h:8096/Library/Media/Updated"
        );
        assert!(endpoint("not a url", &["x"]).is_err());
    }
}
