//! `musicfs`: the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use musicfs::daemon::{load_config, Daemon, DaemonOptions};
use musicfs::library::scanner::ScanProgress;
use musicfs::mount::helper::{self as mount_helper, Ready, Side};
use musicfs::mount::MountSettings;

use musicfs::plugins::folder::{self, Verdict};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "musicfs",
    version,
    about = "Mount a music library that lives in many places",
    after_help = "Also run by mount(8) as `musicfs CONFIG MOUNTPOINT -o OPTIONS` for \
                  `mount -t fuse.musicfs CONFIG MOUNTPOINT` and the fstab line \
                  `CONFIG MOUNTPOINT fuse.musicfs defaults,_netdev 0 0`: it mounts, \
                  then goes on in the background (log: CACHE_DIR/musicfs.log). \
                  Options: allow_other, allow_root, default_permissions, cache_dir=DIR, \
                  plugins=DIR, metrics=ADDR, foreground."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the library comes from (shared by `mount` and `scan`).
#[derive(clap::Args)]
struct Sources {
    /// The plugins folder [default: $MUSICFS_PLUGINS, else
    /// ~/.local/share/musicfs/plugins if it exists, else the executable's folder].
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// A config file (TOML): origins, cache, health, library layout, and
    /// [[hooks]] that tell music servers what changed (see the README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The cache folder (default: the config's, else ~/.cache/musicfs).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// An origin without a config file: KIND:LOCATION, e.g. local:/srv/music.
    #[arg(long = "origin")]
    origins: Vec<String>,
}

impl Sources {
    fn options(self) -> DaemonOptions {
        DaemonOptions {
            plugins_dir: self.plugins.unwrap_or_else(folder::default_dir),
            config: self.config,
            cache_dir: self.cache_dir,
            origins: self.origins,
        }
    }
}

/// Who may read the mount.
#[derive(clap::Args)]
struct Access {
    /// Other users may read the mount (needs root, or user_allow_other in
    /// /etc/fuse.conf): for a music server running as its own user.
    #[arg(long)]
    allow_other: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464);
    /// METRICS.md lists them.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Mounts the library read-only at MOUNTPOINT and serves it until unmounted or
    /// interrupted. With no origin at all, serves a small generated sample library.
    Mount {
        #[command(flatten)]
        sources: Sources,
        #[command(flatten)]
        access: Access,
        /// Where to mount.
        mountpoint: PathBuf,
    },
    /// Shows a running mount's origins (health, failures, latency, files) and cache.
    Status {
        /// The mount to ask (default: the only running one).
        #[arg(long)]
        mount: Option<PathBuf>,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follows the events of a running mount as JSON lines (FileAccessed,
    /// OriginRegistered, PluginLoaded, …) until interrupted.
    Events {
        /// The mount to follow (default: the only running one).
        #[arg(long)]
        mount: Option<PathBuf>,
    },
    /// Keeps tracks, albums, artists or a playlist's entries cached, whatever
    /// the cache's limit, fetching what is not cached yet with a progress
    /// bar. A pinned folder keeps what is added to it later pinned too.
    Pin {
        /// The mount (default: the one holding the first PATH).
        #[arg(long)]
        mount: Option<PathBuf>,
        /// Files or folders inside the mount, or M3U/M3U8 playlists.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Lets pinned paths be evicted again (give the path that was pinned).
    Unpin {
        /// The mount (default: the one holding the first PATH).
        #[arg(long)]
        mount: Option<PathBuf>,
        /// Pinned files or folders inside the mount, or M3U/M3U8 playlists.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Lists the pins of a running mount with their size and how much is cached.
    Pins {
        /// The mount to ask (default: the only running one).
        #[arg(long)]
        mount: Option<PathBuf>,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Builds or refreshes the library index without mounting.
    Scan {
        #[command(flatten)]
        sources: Sources,
    },
    /// Checks what a mount needs without mounting, one line each with what
    /// to do: FUSE (fuse3, /dev/fuse), user_allow_other, the plugins folder,
    /// each origin's reachability and credentials, the cache disk and
    /// passthrough. Exits non-zero if anything fails.
    Doctor {
        #[command(flatten)]
        sources: Sources,
    },
    /// Prints the man page (roff), made from these commands' own help.
    Man,
    /// Prints the completions for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Lists every file in the plugins folder with its verdict: loaded, rejected
    /// and why, or skipped (not named like a shared library).
    Plugins {
        /// The plugins folder [default: as for mount].
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // A plugin process (see `plugins::process`): before anything else of the
    // host's, its log included, which goes to the host over the socket.
    if let [role, library] = args.as_slice() {
        if role == musicfs::plugins::process::PLUGIN_HOST_COMMAND {
            return musicfs::plugins::process::child::run(std::path::Path::new(library));
        }
    }
    // `musicfs doctor` says what it found itself, a line each: the warnings
    // of the origins it opens would say it twice.
    let quiet = args.first().is_some_and(|a| a == "doctor");
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(if quiet { "error" } else { "warn" })),
        )
        .with_writer(std::io::stderr)
        .init();
    // The daemon `musicfs mount` runs under it (see `mount::keeper`).
    if args
        .first()
        .is_some_and(|a| a == musicfs::mount::keeper::SERVE_COMMAND)
    {
        std::process::exit(musicfs::mount::keeper::serve_for_keeper());
    }
    let command = Cli::command();
    let mut subcommands: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
    subcommands.push("help");
    if mount_helper::is_helper_form(&args, &subcommands) {
        return helper_mount(&args);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Plugins { plugins } => list_plugins(&plugins.unwrap_or_else(folder::default_dir)),
        Command::Mount {
            sources,
            access,
            mountpoint,
        } => {
            let settings = MountSettings {
                allow_other: access.allow_other,
                metrics: access.metrics,
                ..MountSettings::default()
            };
            exit(musicfs::mount::run(
                sources.options(),
                &mountpoint,
                &settings,
                &mut Ready::none(),
            ))
        }
        Command::Scan { sources } => exit(scan(sources.options())),
        Command::Doctor { sources } => doctor(sources.options()),
        Command::Man => {
            let page = clap_mangen::Man::new(Cli::command());
            exit(
                page.render(&mut std::io::stdout())
                    .map_err(|e| format!("cannot write the man page: {e}")),
            )
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "musicfs",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Status { mount, json } => exit(status(mount.as_deref(), json)),
        Command::Pin { mount, paths } => {
            exit(musicfs::control::pin_client::pin(mount.as_deref(), &paths))
        }
        Command::Unpin { mount, paths } => exit(musicfs::control::pin_client::unpin(
            mount.as_deref(),
            &paths,
        )),
        Command::Pins { mount, json } => {
            exit(musicfs::control::pin_client::list(mount.as_deref(), json))
        }
        Command::Events { mount } => exit(
            musicfs::control::socket::find_socket(mount.as_deref()).and_then(|socket| {
                musicfs::control::socket::request(&socket, "events", &mut std::io::stdout())
            }),
        ),
    }
}

/// `musicfs CONFIG MOUNTPOINT -o OPTIONS`, as mount(8) runs it (see
/// `mount::helper`): mounts, then serves in the background.
fn helper_mount(args: &[std::ffi::OsString]) -> ExitCode {
    let absolute = |path: &std::path::Path| std::path::absolute(path).unwrap_or(path.to_owned());
    let mount = match mount_helper::parse(args) {
        Ok(mount) => mount,
        Err(e) => return exit(Err(e)),
    };
    let options = DaemonOptions {
        plugins_dir: mount
            .plugins
            .as_deref()
            .map(absolute)
            .unwrap_or_else(folder::default_dir),
        config: Some(absolute(&mount.config)),
        cache_dir: mount.cache_dir.as_deref().map(absolute),
        origins: Vec::new(),
    };
    let config = match load_config(&options) {
        Ok(config) => config,
        Err(e) => return exit(Err(e)),
    };
    let mountpoint = absolute(&mount.mountpoint);
    let log = absolute(&options.cache_dir(&config)).join("musicfs.log");
    let options = DaemonOptions {
        cache_dir: Some(absolute(&options.cache_dir(&config))),
        ..options
    };
    let mut ready = if mount.foreground {
        Ready::none()
    } else {
        match mount_helper::fork_to_background(&log) {
            Ok(Side::Daemon(ready)) => ready,
            Ok(Side::Caller(outcome)) => return exit(outcome),
            Err(e) => return exit(Err(e)),
        }
    };
    let settings = MountSettings {
        allow_other: mount.allow_other,
        allow_root: mount.allow_root,
        default_permissions: mount.default_permissions,
        metrics: mount.metrics,
    };
    let result = musicfs::mount::run(options, &mountpoint, &settings, &mut ready);
    ready.report(&result);
    exit(result)
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("musicfs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn status(mount: Option<&std::path::Path>, json: bool) -> Result<(), String> {
    let socket = musicfs::control::socket::find_socket(mount)?;
    let mut answer = Vec::new();
    musicfs::control::socket::request(&socket, "status", &mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    if json {
        print!("{answer}");
        return Ok(());
    }
    let status: musicfs::control::status::Status =
        serde_json::from_str(answer.trim()).map_err(|e| format!("unreadable status: {e}"))?;
    print!("{}", musicfs::control::status::render(&status));
    Ok(())
}

fn scan(options: DaemonOptions) -> Result<(), String> {
    let config = load_config(&options)?;
    if config.origins.is_empty() {
        return Err("no origin: give --config FILE or --origin KIND:LOCATION".into());
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let daemon = Daemon::open(&options, config)?;
        daemon.start_origins().await;
        let progress = Arc::new(ScanProgress::default());
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"),
        );
        let ticker = {
            let (bar, progress) = (bar.clone(), progress.clone());
            tokio::spawn(async move {
                loop {
                    bar.set_message(format!(
                        "{} files, {} tags read, {} read",
                        progress.files.load(Ordering::Relaxed),
                        progress.tags_read.load(Ordering::Relaxed),
                        HumanBytes(progress.bytes_read.load(Ordering::Relaxed)),
                    ));
                    bar.tick();
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            })
        };
        let report = daemon.rescan(&progress).await;
        ticker.abort();
        bar.finish_and_clear();
        let report = report?;
        println!(
            "{} files ({} tags read, {} read), {} tracks in the library",
            report.files,
            report.tags_read,
            HumanBytes(report.bytes_read),
            daemon.view.snapshot().file_count()
        );
        for (origin, path, problem) in &report.problems {
            println!("problem: {origin}:{path}: {problem}");
        }
        for (origin, why) in &report.failed_origins {
            println!("not scanned: {origin}: {why}");
        }
        for (origin, dir, why) in &report.unlisted {
            println!("not listed: {origin}:{dir}: {why} (its tracks were kept)");
        }
        Ok(())
    })
}

fn doctor(options: DaemonOptions) -> ExitCode {
    let config = match load_config(&options) {
        Ok(config) => config,
        Err(e) => {
            println!("FAIL config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let findings = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(musicfs::doctor::examine(&options, &config)),
        Err(e) => return exit(Err(e.to_string())),
    };
    for finding in &findings {
        println!("{finding}");
    }
    if findings
        .iter()
        .any(|f| f.verdict == musicfs::doctor::Verdict::Fail)
    {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn list_plugins(dir: &std::path::Path) -> ExitCode {
    let inspected = tokio::runtime::Runtime::new().map(|runtime| {
        let options =
            musicfs::plugins::process::ProcessOptions::new(std::time::Duration::from_secs(5));
        runtime.block_on(folder::inspect(dir, &options))
    });
    let verdicts = match inspected {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("musicfs: cannot read plugins folder {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("musicfs: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut loaded = 0;
    for (file, verdict) in &verdicts {
        match verdict {
            Verdict::Loaded {
                info,
                api_version,
                rustc_version,
            } => {
                loaded += 1;
                println!(
                    "{}: loaded: kind {}, version {}, origin-api {api_version}, {} ({rustc_version})",
                    file.display(),
                    info.kind,
                    info.version,
                    info.class.as_str(),
                );
            }
            Verdict::Rejected(reason) => println!("{}: rejected: {reason}", file.display()),
            Verdict::Skipped => println!(
                "{}: skipped: not named like a shared library (*{})",
                file.display(),
                std::env::consts::DLL_SUFFIX
            ),
        }
    }
    if loaded == 0 {
        eprintln!("musicfs: no plugin loaded from {}", dir.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The systemd units' command lines are ones this binary takes.
    #[test]
    fn the_systemd_units_run_a_mount_this_binary_takes() {
        for unit in [
            include_str!("../systemd/musicfs.service"),
            include_str!("../systemd/musicfs-user.service"),
        ] {
            let line = unit
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .expect("an ExecStart line");
            let words = line
                .replace("%h", "/home/u")
                .replace("%E", "/home/u/.config");
            let cli = Cli::try_parse_from(words.split_whitespace())
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            let Command::Mount { sources, .. } = cli.command else {
                panic!("{line}: not a mount");
            };
            assert!(sources.config.is_some(), "{line}: no --config");
        }
    }
}
