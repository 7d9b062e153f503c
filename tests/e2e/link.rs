//! The link emulator itself (`musicfs_tests::link`): TCP over it sees the round
//! trip and the rate of its profile, as the kernel measures them; a cut drops
//! everything and ends; loss is survived by TCP; its counters add up to what was
//! sent. Asserts what the kernel's TCP measured and what the counters say, never
//! how long the test took.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use musicfs_tests::link::{Link, Profile};

/// The kernel's view of a connection.
fn tcp_info(stream: &TcpStream) -> libc::tcp_info {
    // SAFETY: tcp_info is plain data; getsockopt fills at most `len` bytes.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let got = libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        assert_eq!(got, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info
    }
}

/// Sends `size` bytes from a server in the link's namespace to a client here;
/// returns what the client received and the kernel's view of the client's and
/// the server's sockets once every byte was acknowledged.
fn download(link: &Link, size: usize) -> (Vec<u8>, libc::tcp_info, libc::tcp_info) {
    let listener = link.listen(0);
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(&expected(size)).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        // The client closes once it has everything.
        let _ = conn.read_to_end(&mut Vec::new());
        tcp_info(&conn)
    });
    let mut client = TcpStream::connect((link.server_addr(), port)).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    let client_info = tcp_info(&client);
    drop(client);
    (got, client_info, server.join().unwrap())
}

fn expected(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

#[test]
fn tcp_sees_the_round_trip_and_rate_of_the_profile() {
    let link = Link::new(Profile::WAN);
    let before = link.stats();
    let size = 4 << 20;
    let (got, info, _) = download(&link, size);
    assert!(got == expected(size), "the bytes arrived unchanged");
    // Microseconds: the smallest round trip the kernel saw is the link's.
    assert!(
        info.tcpi_min_rtt >= 50_000 && info.tcpi_min_rtt < 60_000,
        "min rtt {} µs on a 50 ms link",
        info.tcpi_min_rtt
    );
    let moved = link.stats() - before;
    // The payload, plus about 52 bytes of headers per 1448-byte segment (and
    // what slow start's overshoot of the router's queue made TCP send again).
    assert!(
        moved.to_clients.bytes >= size as u64 && moved.to_clients.bytes < size as u64 * 11 / 10,
        "{moved:?} for {size} bytes"
    );
    assert!(
        moved.to_servers.bytes < moved.to_clients.bytes / 10,
        "acknowledgements only: {moved:?}"
    );
}

#[test]
fn the_far_profile_loses_packets_and_tcp_delivers_anyway() {
    let link = Link::new(Profile::FAR.with_loss(0.05));
    let size = 1 << 20;
    let (got, client, server) = download(&link, size);
    assert!(got == expected(size));
    let moved = link.stats();
    assert!(
        moved.to_clients.dropped + moved.to_servers.dropped > 0,
        "5% loss dropped nothing: {moved:?}"
    );
    assert!(server.tcpi_total_retrans > 0, "nothing resent");
    assert!(client.tcpi_min_rtt >= 150_000);
}

#[test]
fn a_cut_drops_everything_until_it_ends() {
    let link = Link::new(Profile::LAN);
    let listener = link.listen(0);
    let port = listener.local_addr().unwrap().port();
    link.cut();
    let before = link.stats();
    let refused = TcpStream::connect_timeout(
        &(link.server_addr(), port).into(),
        Duration::from_millis(1500),
    );
    assert!(refused.is_err(), "connected through a cut link");
    let during = link.stats() - before;
    assert!(during.to_servers.dropped > 0, "{during:?}");
    assert_eq!(during.to_servers.packets, 0, "{during:?}");
    link.restore();
    let mut client = TcpStream::connect((link.server_addr(), port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    server.write_all(b"back").unwrap();
    let mut got = [0u8; 4];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"back");
}

#[test]
fn a_collapsed_rate_is_what_tcp_gets() {
    let link = Link::new(Profile::WAN);
    link.set_rate(1_000_000);
    let size = 256 << 10;
    let (got, _, server) = download(&link, size);
    assert!(got == expected(size));
    // Bytes a second, as the sender's kernel measured the last deliveries:
    // about the collapsed rate (125,000 B/s), a hundredth of the profile's.
    // One sample, so ACKs bunched on a busy machine may push it up a little
    // (a full run once saw 134,437).
    let rate = server.tcpi_delivery_rate;
    assert!(rate > 0 && rate <= 156_250, "delivery rate {rate} B/s");
}
