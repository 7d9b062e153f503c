//! Host key verification: the server's key must be in `known_hosts` for this
//! host and port, or match the pinned `host_key_fingerprint`. There is no
//! trust on first use. A refusal is one line that names the host, the
//! fingerprint it presented and how to accept it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::keys::{check_known_hosts_path, HashAlg, PublicKey, PublicKeyOrCertificate};

/// What was decided about the key a server presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Trusted,
    /// Not in `known_hosts` (or only keys of other types are).
    Unknown {
        fingerprint: String,
        key_line: String,
    },
    /// `known_hosts` holds another key of this type for the host, at `line`.
    Changed {
        fingerprint: String,
        line: usize,
    },
    /// The pinned fingerprint is another.
    NotPinned {
        fingerprint: String,
        pinned: String,
    },
    /// `known_hosts` could not be read.
    Unreadable(String),
}

/// Decides about `key`, presented by `host:port`.
pub(crate) fn judge(
    host: &str,
    port: u16,
    key: &PublicKey,
    known_hosts: &Path,
    pin: Option<&str>,
) -> Verdict {
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    if let Some(pinned) = pin {
        return if pinned == fingerprint {
            Verdict::Trusted
        } else {
            Verdict::NotPinned {
                fingerprint,
                pinned: pinned.to_owned(),
            }
        };
    }
    match check_known_hosts_path(host, port, key, known_hosts) {
        Ok(true) => Verdict::Trusted,
        Ok(false) => Verdict::Unknown {
            key_line: key.to_openssh().unwrap_or_default(),
            fingerprint,
        },
        Err(russh::keys::Error::KeyChanged { line }) => Verdict::Changed { fingerprint, line },
        Err(e) => Verdict::Unreadable(e.to_string()),
    }
}

impl Verdict {
    /// Why the connection was refused, in one line; `None` if it was not.
    pub(crate) fn refusal(&self, host: &str, port: u16, known_hosts: &Path) -> Option<String> {
        let shown = if port == 22 {
            host.to_owned()
        } else {
            format!("[{host}]:{port}")
        };
        let file = known_hosts.display();
        Some(match self {
            Verdict::Trusted => return None,
            Verdict::Unknown { fingerprint, .. } => format!(
                "unknown host key: {shown} is not in {file} (it presented {fingerprint}); \
                 if that is its key, add it with `ssh-keyscan -p {port} {host} >> {file}` \
                 or set host_key_fingerprint = \"{fingerprint}\""
            ),
            Verdict::Changed { fingerprint, line } => format!(
                "host key mismatch: {shown} presented {fingerprint}, not the key on line \
                 {line} of {file}; refusing to connect (if the server was reinstalled, \
                 remove that line and add its new key)"
            ),
            Verdict::NotPinned {
                fingerprint,
                pinned,
            } => format!(
                "host key mismatch: {shown} presented {fingerprint}, not the pinned \
                 host_key_fingerprint {pinned}; refusing to connect"
            ),
            Verdict::Unreadable(why) => {
                format!("cannot check the host key of {shown} against {file}: {why}")
            }
        })
    }
}

/// The russh handler of one connection: checks the host key and keeps the
/// verdict where the connecting code can read it after a refusal.
pub(crate) struct Checker {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) known_hosts: PathBuf,
    pub(crate) pin: Option<String>,
    pub(crate) verdict: Arc<Mutex<Option<Verdict>>>,
}

impl russh::client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = judge(
            &self.host,
            self.port,
            &key.public_key(),
            &self.known_hosts,
            self.pin.as_deref(),
        );
        let trusted = verdict == Verdict::Trusted;
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict);
        Ok(trusted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh ed25519 public key, made by ssh-keygen.
    fn key(dir: &Path, name: &str) -> (PublicKey, String) {
        let path = dir.join(name);
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen (openssh-client)");
        assert!(made.success());
        let text = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let base64 = text.split_whitespace().nth(1).unwrap().to_owned();
        (
            russh::keys::parse_public_key_base64(&base64).unwrap(),
            base64,
        )
    }

    #[test]
    fn known_unknown_changed_and_pinned_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, ours_b64) = key(dir.path(), "ours");
        let (other, _) = key(dir.path(), "other");
        let known = dir.path().join("known_hosts");
        std::fs::write(&known, format!("[nas.local]:2222 ssh-ed25519 {ours_b64}\n")).unwrap();

        assert_eq!(
            judge("nas.local", 2222, &ours, &known, None),
            Verdict::Trusted
        );
        let unknown = judge("other.local", 2222, &ours, &known, None);
        assert!(matches!(unknown, Verdict::Unknown { .. }), "{unknown:?}");
        let line = unknown.refusal("other.local", 2222, &known).unwrap();
        let fingerprint = ours.fingerprint(HashAlg::Sha256).to_string();
        assert!(
            line.contains("[other.local]:2222") && line.contains(&fingerprint),
            "{line}"
        );
        assert!(line.contains("ssh-keyscan -p 2222 other.local"), "{line}");

        let changed = judge("nas.local", 2222, &other, &known, None);
        assert!(
            matches!(changed, Verdict::Changed { line: 1, .. }),
            "{changed:?}"
        );
        assert!(changed
            .refusal("nas.local", 2222, &known)
            .unwrap()
            .contains("line 1"));

        assert_eq!(
            judge(
                "anywhere",
                22,
                &other,
                &known,
                Some(&other.fingerprint(HashAlg::Sha256).to_string())
            ),
            Verdict::Trusted,
            "a pin needs no known_hosts"
        );
        let pinned = judge("anywhere", 22, &other, &known, Some(&fingerprint));
        assert!(matches!(pinned, Verdict::NotPinned { .. }), "{pinned:?}");
        assert_eq!(Verdict::Trusted.refusal("h", 22, &known), None);
        let missing = judge("nas.local", 2222, &ours, &dir.path().join("none"), None);
        assert!(
            matches!(missing, Verdict::Unknown { .. }),
            "no file: nothing is trusted"
        );
    }
}
