//! A real distributed S3 store for the shared tier's tests: Garage, three
//! nodes on loopback with replication factor 3, each its own process with its
//! own ports and folders, configured the way an operator would (connect the
//! nodes, assign and apply a layout, make a bucket and a key). Garage is run
//! as a separate program (`cargo install --locked garage@2.5.0`), never linked.
//!
//! A node can be killed and started again, to test a tier that loses a node
//! (reads and writes go on: quorum 2 of 3) or the whole tier.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::link::Site;

/// The bucket the tier's tests use.
pub const BUCKET: &str = "musicfs-tier";
/// A key with read and write rights on [`BUCKET`].
pub const ACCESS_KEY: &str = "GKmusicfs0tier0test0key000";
/// Its secret (tests check it never reaches a log).
pub const SECRET_KEY: &str = "tier-secret-do-not-log-0123456789abcdef";
/// A key that may only read [`BUCKET`].
pub const READ_ONLY_KEY: &str = "GKmusicfs0tier0read0only00";
/// Its secret.
pub const READ_ONLY_SECRET: &str = "tier-read-only-secret-0123456789abcdef";
/// The region the cluster answers to.
pub const REGION: &str = "garage";

/// How long a cluster may take to come up: a hang detector, not a speed
/// bound (a full run's other tests load the machine; once, under them, a
/// step of the setup passed 120 s).
const START_DEADLINE: Duration = Duration::from_secs(300);

/// One node: its configuration and, while it runs, its process.
struct Node {
    config: PathBuf,
    s3_port: u16,
    child: Option<Child>,
    /// Its data folder, when it is a small file system of its own.
    small_data: Option<PathBuf>,
}

/// A running Garage cluster.
pub struct GarageCluster {
    nodes: Vec<Node>,
    /// Where its nodes run (their traffic among themselves stays there).
    site: Site,
    dir: tempfile::TempDir,
}

fn run(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .expect("garage runs (cargo install --locked garage@2.5.0)");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl GarageCluster {
    /// Starts `nodes` nodes (3 for replication factor 3) with [`BUCKET`] and
    /// its two keys ready.
    pub fn start(nodes: usize) -> GarageCluster {
        GarageCluster::start_at(Site::loopback(), nodes, None)
    }

    /// [`GarageCluster::start`], each node's data folder (where object
    /// bodies go; its metadata stays on the test's disk) a file system of
    /// `space` bytes when given: a tier that fills up. Needs root (tmpfs).
    pub fn start_with_data_space(nodes: usize, space: Option<u64>) -> GarageCluster {
        GarageCluster::start_at(Site::loopback(), nodes, space)
    }

    /// [`GarageCluster::start_with_data_space`] with its nodes at `site`:
    /// behind an emulated link ([`crate::link::Link::site`]), a tier far
    /// away; the nodes reach one another there, the mounts cross the link.
    pub fn start_at(site: Site, nodes: usize, space: Option<u64>) -> GarageCluster {
        let dir = tempfile::tempdir().unwrap();
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) as u8))
            .collect();
        let mut cluster = GarageCluster {
            nodes: (0..nodes)
                .map(|n| write_config(dir.path(), n, nodes, &secret, &site))
                .collect(),
            site,
            dir,
        };
        if let Some(space) = space {
            for n in 0..nodes {
                let data = cluster.dir.path().join(format!("node{n}/data"));
                let out = Command::new("mount")
                    .args(["-t", "tmpfs", "-o"])
                    .arg(format!("size={space}"))
                    .arg("musicfs-tier-test")
                    .arg(&data)
                    .output()
                    .expect("mount runs");
                assert!(
                    out.status.success(),
                    "cannot give node {n} a small data folder (root is needed): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                cluster.nodes[n].small_data = Some(data);
            }
        }
        for n in 0..nodes {
            cluster.start_node(n);
        }
        cluster.configure();
        cluster
    }

    /// The S3 endpoint of node `n`.
    pub fn endpoint(&self, n: usize) -> String {
        format!("http://{}:{}", self.site.addr, self.nodes[n].s3_port)
    }

    /// A `[tier]` table for node `n`, the bucket under `prefix`, with the
    /// key that may read and write.
    pub fn tier_settings(&self, n: usize, prefix: &str) -> toml::Table {
        let mut tier = toml::Table::new();
        tier.insert("endpoint".into(), self.endpoint(n).into());
        tier.insert("bucket".into(), BUCKET.into());
        tier.insert("prefix".into(), prefix.into());
        tier.insert("region".into(), REGION.into());
        tier.insert("access_key_id".into(), ACCESS_KEY.into());
        tier.insert("secret_access_key".into(), SECRET_KEY.into());
        tier
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A `garage` command run against node `n`.
    fn cli(&self, n: usize) -> Command {
        let mut command = self.site.command("garage");
        command.arg("-c").arg(&self.nodes[n].config);
        command
    }

    /// Starts node `n`'s process (again).
    pub fn start_node(&mut self, n: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("node{n}.log"))).unwrap();
        let child = self
            .cli(n)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("garage runs (cargo install --locked garage@2.5.0)");
        self.nodes[n].child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect((self.site.addr, self.nodes[n].s3_port)).is_err() {
            assert!(
                started.elapsed() < START_DEADLINE,
                "garage node {n} did not start: {}",
                self.log(n)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills node `n` at once (SIGKILL): a node lost mid-request.
    pub fn kill_node(&mut self, n: usize) {
        if let Some(mut child) = self.nodes[n].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the nodes still up see the cluster as degraded (a node
    /// lost): until then a call may wait on the lost node.
    pub fn wait_degraded(&self) {
        let up = (0..self.nodes.len())
            .find(|&n| self.nodes[n].child.is_some())
            .expect("a node up");
        let started = Instant::now();
        loop {
            let out = self
                .cli(up)
                .args(["json-api", "GetClusterHealth"])
                .stdin(Stdio::null())
                .output()
                .expect("garage runs");
            let said = String::from_utf8_lossy(&out.stdout);
            if said.contains("\"degraded\"") {
                return;
            }
            assert!(
                started.elapsed() < START_DEADLINE,
                "garage never saw a node lost: {said} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills every node.
    pub fn kill_all(&mut self) {
        for n in 0..self.nodes.len() {
            self.kill_node(n);
        }
    }

    /// What node `n` logged.
    pub fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{n}.log"))).unwrap_or_default()
    }

    /// Connects the nodes, gives each a role in one zone, applies the layout,
    /// and makes the bucket and its keys.
    fn configure(&self) {
        let ids: Vec<String> = (0..self.nodes.len())
            .map(|n| {
                let out = run(self.cli(n).args(["node", "id", "-q"]));
                String::from_utf8(out.stdout).unwrap().trim().to_owned()
            })
            .collect();
        for id in &ids[1..] {
            self.retry("connect a node", || {
                self.cli(0).args(["node", "connect", id]).output()
            });
        }
        let short: Vec<&str> = ids.iter().map(|id| &id[..16]).collect();
        self.retry("assign the layout", || {
            self.cli(0)
                .args(["layout", "assign", "-z", "dc1", "-c", "1G"])
                .args(&short)
                .output()
        });
        run(self.cli(0).args(["layout", "apply", "--version", "1"]));
        run(self.cli(0).args(["bucket", "create", BUCKET]));
        for (key, secret, rights) in [
            (
                ACCESS_KEY,
                SECRET_KEY,
                &["--read", "--write", "--owner"][..],
            ),
            (READ_ONLY_KEY, READ_ONLY_SECRET, &["--read"][..]),
        ] {
            run(self
                .cli(0)
                .args(["key", "import", "--yes", "-n", key, key, secret]));
            run(self
                .cli(0)
                .args(["bucket", "allow"])
                .args(rights)
                .args([BUCKET, "--key", key]));
        }
        // Keys and buckets reach every node's own copy within seconds: wait
        // until each node knows them.
        for n in 0..self.nodes.len() {
            self.retry("see the bucket's key on every node", || {
                self.cli(n).args(["key", "info", ACCESS_KEY]).output()
            });
            self.retry("see the bucket on every node", || {
                self.cli(n).args(["bucket", "info", BUCKET]).output()
            });
        }
    }

    /// Runs `attempt` until it succeeds, within [`START_DEADLINE`].
    fn retry(&self, what: &str, attempt: impl Fn() -> std::io::Result<Output>) {
        let started = Instant::now();
        loop {
            let output = attempt().expect("garage runs");
            if output.status.success() {
                return;
            }
            assert!(
                started.elapsed() < START_DEADLINE,
                "garage: cannot {what}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        self.kill_all();
        for node in &self.nodes {
            if let Some(data) = &node.small_data {
                let _ = Command::new("umount").arg(data).output();
            }
        }
    }
}

/// Writes node `n`'s configuration; its ports are free now.
fn write_config(dir: &Path, n: usize, nodes: usize, secret: &str, site: &Site) -> Node {
    let root = dir.join(format!("node{n}"));
    std::fs::create_dir_all(root.join("meta")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    let (rpc, s3, admin) = (site.free_port(), site.free_port(), site.free_port());
    let addr = site.addr;
    let config = root.join("garage.toml");
    let text = format!(
        r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = {factor}
rpc_bind_addr = "{addr}:{rpc}"
rpc_public_addr = "{addr}:{rpc}"
rpc_secret = "{secret}"

[s3_api]
api_bind_addr = "{addr}:{s3}"
s3_region = "{REGION}"

[admin]
api_bind_addr = "{addr}:{admin}"
"#,
        meta = root.join("meta").display(),
        data = root.join("data").display(),
        factor = nodes.min(3),
    );
    std::fs::write(&config, text).unwrap();
    Node {
        config,
        s3_port: s3,
        child: None,
        small_data: None,
    }
}
