//! An emulated network link with real delay, rate and loss, for testing what
//! latency does to MusicFS (this machine's kernel has no `sch_netem`).
//!
//! A [`Link`] is a network namespace of its own, joined to this one by two TUN
//! devices: `mfsh<n>` here (address `.1` of a private /30) and `mfsn<n>` inside
//! the namespace (address `.2`). Servers run inside the namespace
//! ([`Link::command`]) and listen on [`Link::server_addr`]; clients here connect
//! to that address, so every packet between them crosses the delay line and
//! nothing else does.
//!
//! The delay line is one thread per direction. Each packet read from one device
//! is serialised at the link's rate behind the packets before it (a queue of
//! bounded depth: past it the packet is dropped, as a router's buffer would),
//! lost with the configured probability, held for the one-way delay and then
//! written to the other device. That is `netem delay D rate R loss P limit L` on
//! both directions: TCP sees a real round trip, a real bandwidth-delay product,
//! slow start and retransmissions. A userspace TCP proxy could not show that: it
//! ends each connection at itself.
//!
//! Faults are set while traffic flows: [`Link::cut`] drops every packet until
//! [`Link::restore`], [`Link::set_rate`] changes the rate (a collapse to
//! 1 Mbit/s). [`Link::stats`] counts the packets and bytes delivered and dropped
//! each way, so a test asserts what crossed the link, never how long it took.
//!
//! Needs root (namespaces, TUN devices); a test that uses it runs as root or
//! fails saying so.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a link is like.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    /// Bits per second each way.
    pub rate_bps: u64,
    /// The round trip the link adds (half each way).
    pub rtt: Duration,
    /// The chance that a packet is lost, each way.
    pub loss: f64,
}

impl Profile {
    /// 1 Gbit/s, 0.5 ms round trip: a LAN.
    pub const LAN: Profile = Profile {
        rate_bps: 1_000_000_000,
        rtt: Duration::from_micros(500),
        loss: 0.0,
    };
    /// 100 Mbit/s, 50 ms round trip: a seedbox or a NAS over a VPN.
    pub const WAN: Profile = Profile {
        rate_bps: 100_000_000,
        rtt: Duration::from_millis(50),
        loss: 0.0,
    };
    /// 20 Mbit/s, 150 ms round trip, 1% loss: the other side of the world.
    pub const FAR: Profile = Profile {
        rate_bps: 20_000_000,
        rtt: Duration::from_millis(150),
        loss: 0.01,
    };

    /// The profile named `lan`, `wan` or `far`.
    pub fn named(name: &str) -> Option<Profile> {
        match name {
            "lan" => Some(Self::LAN),
            "wan" => Some(Self::WAN),
            "far" => Some(Self::FAR),
            _ => None,
        }
    }

    /// This profile losing `loss` of its packets each way.
    pub fn with_loss(self, loss: f64) -> Profile {
        Profile { loss, ..self }
    }

    /// Bytes per second each way.
    pub fn bytes_per_sec(&self) -> f64 {
        self.rate_bps as f64 / 8.0
    }
}

/// Packets and bytes of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Packets delivered.
    pub packets: u64,
    /// IP bytes delivered (headers included).
    pub bytes: u64,
    /// Packets dropped (lost, cut, or over the queue's depth).
    pub dropped: u64,
}

impl std::ops::Sub for Flow {
    type Output = Flow;
    fn sub(self, earlier: Flow) -> Flow {
        Flow {
            packets: self.packets - earlier.packets,
            bytes: self.bytes - earlier.bytes,
            dropped: self.dropped - earlier.dropped,
        }
    }
}

/// What crossed a link, each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// From this side to the servers.
    pub to_servers: Flow,
    /// From the servers to this side.
    pub to_clients: Flow,
}

impl std::ops::Sub for Stats {
    type Output = Stats;
    fn sub(self, earlier: Stats) -> Stats {
        Stats {
            to_servers: self.to_servers - earlier.to_servers,
            to_clients: self.to_clients - earlier.to_clients,
        }
    }
}

#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn flow(&self) -> Flow {
        Flow {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The link's state, shared with its two delay lines.
struct Shape {
    rate_bps: AtomicU64,
    one_way_ns: AtomicU64,
    /// Loss as a fraction of `u32::MAX`.
    loss: AtomicU64,
    cut: AtomicBool,
    stop: AtomicBool,
}

/// An emulated link to a network namespace of its own. Dropping it stops the
/// delay lines and removes the namespace (stop the servers inside it first).
pub struct Link {
    netns: String,
    host_dev: String,
    /// The first address of the link's /30.
    subnet: u32,
    shape: Arc<Shape>,
    up: Arc<Counters>,
    down: Arc<Counters>,
    lines: Vec<JoinHandle<()>>,
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Opens a new TUN device named `name` (no packet information header).
fn open_tun(name: &str) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // struct ifreq: a 16-byte name, then the flags (a short) in a 24-byte union.
    let mut ifreq = [0u8; 40];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    let flags: libc::c_short = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    ifreq[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `ifreq` is.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Runs `ip ARGS`, panicking with its output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip runs (apt-get install iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Link {
    /// A new link shaped like `profile`. Panics (saying why) without root.
    pub fn new(profile: Profile) -> Link {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "an emulated link needs root (a network namespace and TUN devices)"
        );
        // `ip netns add` sets /run/netns up as a mount of its own the first
        // time; two at once race there and one namespace ends up hidden.
        static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = MAKING.lock().unwrap_or_else(|p| p.into_inner());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // A /30 of 172.16.0.0/12 per link, apart for every process and link.
        let block = (u64::from(std::process::id()) * 64 + n) % (1 << 18);
        let base = 0xAC10_0000u32 | ((block as u32) << 2);
        let tag = format!("{}x{n}", std::process::id());
        let netns = format!("musicfs-link-{tag}");
        let host_dev = format!("mh{tag}");
        let ns_dev = format!("mn{tag}");
        assert!(host_dev.len() < 16, "device name {host_dev} too long");
        let host_tun = open_tun(&host_dev).expect("a TUN device (needs /dev/net/tun)");
        let ns_tun = open_tun(&ns_dev).expect("a TUN device (needs /dev/net/tun)");
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        ip(&["netns", "add", &netns]);
        ip(&["link", "set", &ns_dev, "netns", &netns]);
        let (here, there) = (
            Ipv4Addr::from(base + 1).to_string(),
            Ipv4Addr::from(base + 2).to_string(),
        );
        // No IPv6 on either side: its chatter would cross the link too.
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{host_dev}/disable_ipv6"),
            "1",
        );
        ip(&["addr", "add", &here, "peer", &there, "dev", &host_dev]);
        ip(&["link", "set", &host_dev, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["-n", netns.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        in_ns(&["link", "set", "lo", "up"]);
        let _ = Command::new("ip")
            .args(["netns", "exec", &netns, "sysctl", "-qw"])
            .arg(format!("net.ipv6.conf.{ns_dev}.disable_ipv6=1"))
            .output();
        in_ns(&["addr", "add", &there, "peer", &here, "dev", &ns_dev]);
        in_ns(&["link", "set", &ns_dev, "up"]);

        let shape = Arc::new(Shape {
            rate_bps: AtomicU64::new(0),
            one_way_ns: AtomicU64::new(0),
            loss: AtomicU64::new(0),
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let (up, down) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
        let mut link = Link {
            netns,
            host_dev,
            subnet: base,
            shape,
            up,
            down,
            lines: Vec::new(),
        };
        link.set_profile(profile);
        let (host_in, ns_in) = (host_tun.try_clone().unwrap(), ns_tun.try_clone().unwrap());
        link.lines.push(delay_line(
            "link-up",
            host_in,
            ns_tun,
            link.shape.clone(),
            link.up.clone(),
            n,
        ));
        link.lines.push(delay_line(
            "link-down",
            ns_in,
            host_tun,
            link.shape.clone(),
            link.down.clone(),
            n.wrapping_add(0x9E37_79B9),
        ));
        link
    }

    /// The address servers in the namespace listen on.
    pub fn server_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.subnet + 2)
    }

    /// This side's address on the link.
    pub fn client_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.subnet + 1)
    }

    /// The namespace's name (`ip netns exec NAME …`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The device on this side.
    pub fn device(&self) -> &str {
        &self.host_dev
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.site().command(program)
    }

    /// Where servers behind this link run.
    pub fn site(&self) -> Site {
        Site {
            addr: self.server_addr(),
            netns: Some(self.netns.clone()),
        }
    }

    /// A TCP listener inside the namespace, on its address and `port` (0: any).
    pub fn listen(&self, port: u16) -> std::net::TcpListener {
        self.site().listen(port)
    }

    /// Shapes the link like `profile` from now on.
    pub fn set_profile(&self, profile: Profile) {
        self.set_rate(profile.rate_bps);
        self.shape
            .one_way_ns
            .store(profile.rtt.as_nanos() as u64 / 2, Ordering::Relaxed);
        self.set_loss(profile.loss);
    }

    /// Changes the rate (bits per second each way), as when a link collapses.
    pub fn set_rate(&self, rate_bps: u64) {
        self.shape
            .rate_bps
            .store(rate_bps.max(1), Ordering::Relaxed);
    }

    /// Changes the chance of losing a packet, each way.
    pub fn set_loss(&self, loss: f64) {
        let scaled = (loss.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u64;
        self.shape.loss.store(scaled, Ordering::Relaxed);
    }

    /// Drops every packet from now until [`Link::restore`].
    pub fn cut(&self) {
        self.shape.cut.store(true, Ordering::Relaxed);
    }

    /// Ends a [`Link::cut`].
    pub fn restore(&self) {
        self.shape.cut.store(false, Ordering::Relaxed);
    }

    /// Waits until nothing has crossed the link for half a second (the
    /// streams a read started have ended or paused), then gives what crossed
    /// it so far. Panics if it is never quiet for a minute.
    pub fn settled(&self) -> Stats {
        let mut last = self.stats();
        let mut quiet_since = Instant::now();
        let limit = Instant::now() + Duration::from_secs(60);
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.stats();
            if now != last {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= Duration::from_millis(500) {
                return now;
            }
            assert!(Instant::now() < limit, "the link was never quiet");
        }
    }

    /// What crossed the link so far.
    pub fn stats(&self) -> Stats {
        Stats {
            to_servers: self.up.flow(),
            to_clients: self.down.flow(),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shape.stop.store(true, Ordering::Relaxed);
        for line in self.lines.drain(..) {
            let _ = line.join();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// Where a test server runs: on loopback here, or behind a [`Link`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The address it listens on and clients connect to.
    pub addr: Ipv4Addr,
    /// The network namespace it runs in, if not this one.
    netns: Option<String>,
}

impl Site {
    /// Loopback, in this namespace.
    pub fn loopback() -> Site {
        Site {
            addr: Ipv4Addr::LOCALHOST,
            netns: None,
        }
    }

    /// Whether this is behind a link.
    pub fn is_remote(&self) -> bool {
        self.netns.is_some()
    }

    /// `program`, to be run where the server runs.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            None => Command::new(program),
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(program);
                command
            }
        }
    }

    /// A TCP port free on this site's address now.
    pub fn free_port(&self) -> u16 {
        self.listen(0).local_addr().unwrap().port()
    }

    /// A TCP listener on this site's address and `port` (0: any).
    pub fn listen(&self, port: u16) -> std::net::TcpListener {
        let addr = (self.addr, port);
        let Some(netns) = &self.netns else {
            return std::net::TcpListener::bind(addr).expect("a listener on loopback");
        };
        let netns = format!("/run/netns/{netns}");
        std::thread::spawn(move || {
            let ns = File::open(&netns).expect("the link's namespace");
            // SAFETY: setns on this thread only, with a namespace file we opened.
            let joined = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
            std::net::TcpListener::bind(addr).expect("a listener in the namespace")
        })
        .join()
        .expect("the thread that binds in the namespace")
    }
}

/// The most a queue may hold, as time to drain it at the current rate: a
/// router's buffer of about this much (100 ms, at least 64 KiB).
const QUEUE_TIME: Duration = Duration::from_millis(100);
const QUEUE_MIN_BYTES: u64 = 64 * 1024;

/// Starts the thread that moves packets from `from` to `to` as `shape` says.
fn delay_line(
    name: &str,
    mut from: File,
    mut to: File,
    shape: Arc<Shape>,
    counters: Arc<Counters>,
    seed: u64,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut rng = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
            let mut held: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
            // When the packets queued so far will have been serialised.
            let mut busy_until = Instant::now();
            let mut buf = vec![0u8; 65_536];
            let fd = from.as_raw_fd();
            // SAFETY: F_SETFL on a file we own.
            unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
            let mut spare: Vec<Vec<u8>> = Vec::new();
            while !shape.stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                // Deliver what is due.
                while held.front().is_some_and(|(due, _)| *due <= now) {
                    let (_, packet) = held.pop_front().expect("just seen");
                    if to.write(&packet).is_ok() {
                        counters.packets.fetch_add(1, Ordering::Relaxed);
                        counters
                            .bytes
                            .fetch_add(packet.len() as u64, Ordering::Relaxed);
                    }
                    spare.push(packet);
                }
                // Wait for a packet, or the next delivery (10 ms at most, to see
                // `stop`).
                let wait = held.front().map_or(Duration::from_millis(10), |(due, _)| {
                    due.saturating_duration_since(now)
                        .min(Duration::from_millis(10))
                });
                let mut poll = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                let timeout = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: wait.as_nanos() as libc::c_long,
                };
                // SAFETY: one valid pollfd and a valid timespec.
                let ready = unsafe { libc::ppoll(&mut poll, 1, &timeout, std::ptr::null()) };
                if ready <= 0 {
                    continue;
                }
                // Take every packet waiting.
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(n) if n > 0 => n,
                        _ => break,
                    };
                    let arrived = Instant::now();
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let lost = (rng >> 32) < shape.loss.load(Ordering::Relaxed);
                    if lost || shape.cut.load(Ordering::Relaxed) {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let rate = shape.rate_bps.load(Ordering::Relaxed);
                    let start = busy_until.max(arrived);
                    let backlog = start - arrived;
                    let limit = QUEUE_TIME.max(Duration::from_nanos(
                        QUEUE_MIN_BYTES * 8 * 1_000_000_000 / rate,
                    ));
                    if backlog > limit {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let serialise = Duration::from_nanos(n as u64 * 8 * 1_000_000_000 / rate);
                    busy_until = start + serialise;
                    let due =
                        busy_until + Duration::from_nanos(shape.one_way_ns.load(Ordering::Relaxed));
                    let mut packet = spare.pop().unwrap_or_default();
                    packet.clear();
                    packet.extend_from_slice(&buf[..n]);
                    held.push_back((due, packet));
                }
            }
        })
        .expect("a delay line thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_by_name() {
        assert_eq!(Profile::named("wan"), Some(Profile::WAN));
        assert_eq!(Profile::named("far").unwrap().loss, 0.01);
        assert_eq!(Profile::named("moon"), None);
    }
}
