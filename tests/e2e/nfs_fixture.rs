//! The NFS tests' server works: a real nfs-ganesha on loopback answers the
//! NULL procedure of NFSv3, NFSv4 and MOUNT v3 on its own ports (checked
//! with rpcinfo), before and after a restart.

use std::process::Command;

use musicfs_tests::nfs_server::NfsServer;

fn null_call(port: u16, program: &str, version: &str) -> String {
    let out = Command::new("rpcinfo")
        .args(["-n", &port.to_string(), "-t", "127.0.0.1", program, version])
        .output()
        .expect("rpcinfo runs (apt-get install rpcbind)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_test_ganesha_answers_nfs3_nfs4_and_mount() {
    let mut server = NfsServer::start();
    std::fs::write(server.library.join("hello.txt"), b"hello").unwrap();
    for _ in 0..2 {
        for (port, program, version) in [
            (server.port, "nfs", "3"),
            (server.port, "nfs", "4"),
            (server.mount_port, "mountd", "3"),
        ] {
            let said = null_call(port, program, version);
            assert!(
                said.contains("ready and waiting"),
                "{program} v{version}: {said}\n{}",
                server.log()
            );
        }
        server.pause();
        server.resume();
    }
}
