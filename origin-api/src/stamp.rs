//! The version stamp: a plain `#[no_mangle]` static every plugin exports beside its
//! abi_stable root module.
//!
//! abi_stable's own check runs only after the library's root module is looked up,
//! and its messages speak of type layouts. The stamp is read first, with nothing but
//! `dlsym`, so that a plugin built against another `origin-api` is rejected with one
//! line a person can act on: which file, built for which version, what the host needs.
//! Its layout must never change: a magic, then fixed-size NUL-padded strings.

/// The symbol name of the stamp.
pub const STAMP_SYMBOL: &str = "MUSICFS_PLUGIN_STAMP";

/// Identifies a MusicFS plugin stamp (and the stamp layout's own version).
pub const STAMP_MAGIC: [u8; 16] = *b"MUSICFS-PLUGIN-1";

/// The version of `origin-api` this crate is.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The compiler that built this crate (and so the plugin that embeds the stamp).
pub const RUSTC_VERSION: &str = env!("ORIGIN_API_RUSTC_VERSION");

/// What a plugin library says about how it was built.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PluginStamp {
    /// [`STAMP_MAGIC`].
    pub magic: [u8; 16],
    /// The `origin-api` version, NUL-padded.
    pub api_version: [u8; 32],
    /// `rustc --version`, NUL-padded.
    pub rustc_version: [u8; 96],
}

impl PluginStamp {
    /// The stamp of a plugin built against this `origin-api`.
    pub const CURRENT: PluginStamp = PluginStamp::claiming(API_VERSION);

    /// A stamp claiming another `origin-api` version; only tests want this.
    pub const fn claiming(api_version: &str) -> PluginStamp {
        PluginStamp {
            magic: STAMP_MAGIC,
            api_version: pad(api_version),
            rustc_version: pad(RUSTC_VERSION),
        }
    }

    /// The `origin-api` version the plugin was built against.
    pub fn api_version(&self) -> String {
        unpad(&self.api_version)
    }

    /// The compiler the plugin was built with.
    pub fn rustc_version(&self) -> String {
        unpad(&self.rustc_version)
    }
}

const fn pad<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() && i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

fn unpad(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Whether a plugin built against `plugin` can be loaded by a host built against
/// `host`: the same major version, older or newer minor (the 1.x rule in
/// `crate::ffi`); before 1.0, the same minor version (each 0.x minor could change
/// the ABI).
pub fn versions_compatible(plugin: &str, host: &str) -> bool {
    match (major_minor(plugin), major_minor(host)) {
        (Some((pm, pn)), Some((hm, hn))) => pm == hm && (hm != 0 || pn == hn),
        _ => false,
    }
}

/// `0.1` for `0.1.7`: what a plugin must be rebuilt against.
pub fn compatible_range(version: &str) -> String {
    match major_minor(version) {
        Some((0, minor)) => format!("0.{minor}.x"),
        Some((major, _)) => format!("{major}.x"),
        None => version.to_owned(),
    }
}

fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_its_strings() {
        let stamp = PluginStamp::CURRENT;
        assert_eq!(stamp.api_version(), API_VERSION);
        assert!(stamp.rustc_version().starts_with("rustc "));
    }

    #[test]
    fn compatibility_follows_cargo_semver() {
        assert!(versions_compatible("0.1.0", "0.1.9"));
        assert!(versions_compatible("0.1.9", "0.1.0"));
        assert!(!versions_compatible("0.0.1", "0.1.0"));
        assert!(!versions_compatible("0.2.0", "0.1.0"));
        assert!(versions_compatible("1.2.0", "1.5.0"));
        assert!(versions_compatible("1.5.0", "1.2.0"));
        assert!(!versions_compatible("0.1.0", "1.0.0"));
        assert!(!versions_compatible("2.0.0", "1.5.0"));
        assert!(!versions_compatible("garbage", "0.1.0"));
        assert_eq!(compatible_range("0.1.3"), "0.1.x");
        assert_eq!(compatible_range("2.1.3"), "2.x");
    }
}
