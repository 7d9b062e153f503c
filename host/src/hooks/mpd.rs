//! MPD: `update <folder>` for each changed folder, in one command list.
//!
//! The folders are relative to the mount, which is MPD's `music_directory`.
//! MPD answers each `update` with a job id and runs the jobs in order.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::config::hooks::Secret;

/// Connects to `address` (`host:port`, or a Unix socket path) and asks MPD to
/// update `folders`.
pub async fn update(
    address: &str,
    password: Option<&Secret>,
    folders: &[String],
) -> Result<(), String> {
    if address.starts_with('/') {
        let stream = tokio::net::UnixStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to MPD at {address}: {e}"))?;
        talk(stream, password, folders).await
    } else {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to MPD at {address}: {e}"))?;
        talk(stream, password, folders).await
    }
}

async fn talk(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    password: Option<&Secret>,
    folders: &[String],
) -> Result<(), String> {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    let greeting = next_line(&mut lines).await?;
    if !greeting.starts_with("OK MPD ") {
        return Err(format!("not an MPD server (it said {greeting:?})"));
    }
    let mut request = String::new();
    if let Some(password) = password {
        request.push_str(&format!("password {}\n", quoted(password.expose())));
    }
    request.push_str("command_list_ok_begin\n");
    for folder in folders {
        request.push_str(&format!("update {}\n", quoted(folder)));
    }
    request.push_str("command_list_end\n");
    write
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("MPD: {e}"))?;
    // The password's own OK, then the list's.
    let mut oks_left = 1 + usize::from(password.is_some());
    while oks_left > 0 {
        let line = next_line(&mut lines).await?;
        if let Some(error) = line.strip_prefix("ACK ") {
            return Err(format!("MPD refused: {error}"));
        }
        if line == "OK" {
            oks_left -= 1;
        }
    }
    let _ = write.write_all(b"close\n").await;
    Ok(())
}

async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<impl AsyncRead + Unpin>>,
) -> Result<String, String> {
    match lines.next_line().await {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err("MPD closed the connection".into()),
        Err(e) => Err(format!("MPD: {e}")),
    }
}

/// An MPD protocol string argument: in double quotes, `"` and `\` escaped.
fn quoted(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_and_escaped() {
        assert_eq!(quoted("A/B"), "\"A/B\"");
        assert_eq!(quoted(r#"The "Best" \ Of"#), r#""The \"Best\" \\ Of""#);
    }
}
