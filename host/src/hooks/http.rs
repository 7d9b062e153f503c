//! The HTTP hooks, each by its server's documented API:
//!
//! - Subsonic (Navidrome, Airsonic, gonic): `GET /rest/startScan` with token
//!   authentication (`t` = MD5 of password and salt, `s` = the salt), so the
//!   password itself never travels.
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

use crate::config::hooks::Secret;

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
    let request = request.build().map_err(|e| e.without_url().to_string())?;
    let what = format!("{} {}", request.method(), request.url().path());
    let response = client
        .execute(request)
        .await
        .map_err(|e| format!("{what}: {}", e.without_url()))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let said: String = body.trim().chars().take(200).collect();
        return Err(format!("{what}: HTTP {status} {said}"));
    }
    Ok(body)
}

/// Subsonic `startScan`.
pub async fn subsonic(
    client: &Client,
    url: &str,
    user: &str,
    password: &Secret,
) -> Result<(), String> {
    let salt = salt();
    let token = hex(&md5::Md5::digest(format!("{}{salt}", password.expose())));
    let mut endpoint = endpoint(url, &["rest", "startScan"])?;
    endpoint
        .query_pairs_mut()
        .append_pair("u", user)
        .append_pair("t", &token)
        .append_pair("s", &salt)
        .append_pair("v", SUBSONIC_API)
        .append_pair("c", "musicfs")
        .append_pair("f", "json");
    let body = send(client, client.request(Method::GET, endpoint)).await?;
    // The API answers 200 with a status inside.
    let answer: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("GET /rest/startScan: not JSON: {e}"))?;
    let response = &answer["subsonic-response"];
    match response["status"].as_str() {
        Some("ok") => Ok(()),
        _ => Err(format!(
            "GET /rest/startScan: {}",
            response["error"]["message"]
                .as_str()
                .unwrap_or("the server said it failed")
        )),
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
