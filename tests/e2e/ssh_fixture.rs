//! The SFTP tests' server works: a real sshd that presents its own host key and
//! serves the library over SFTP to the test's key, checked with OpenSSH's own
//! client.

use std::process::Command;

use musicfs_tests::ssh_server::SshServer;

#[test]
fn the_test_sshd_serves_sftp_with_its_own_host_key() {
    let server = SshServer::start();
    std::fs::write(server.library.join("hello.txt"), b"hello").unwrap();
    let scanned = Command::new("ssh-keyscan")
        .args(["-t", "ed25519", "-p", &server.port.to_string(), "127.0.0.1"])
        .output()
        .unwrap();
    let scanned = String::from_utf8_lossy(&scanned.stdout);
    let key = server.host_key_pub.split_whitespace().nth(1).unwrap();
    assert!(scanned.contains(key), "keyscan gave {scanned:?}");

    let batch = server.library.parent().unwrap().join("batch");
    std::fs::write(&batch, format!("ls {}\n", server.library.display())).unwrap();
    let listed = Command::new("sftp")
        .args(["-b"])
        .arg(&batch)
        .args(["-i"])
        .arg(&server.client_key)
        .args(["-o", "BatchMode=yes", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            server.known_hosts.display()
        ))
        .args(["-P", &server.port.to_string(), "127.0.0.1"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && out.contains("hello.txt"),
        "sftp: {out} {} / sshd: {}",
        String::from_utf8_lossy(&listed.stderr),
        server.log()
    );
}
