//! `musicfs`: the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use musicfs::plugin_folder;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "musicfs",
    version,
    about = "Mount a music library that lives in many places"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists every file in the plugins folder with its verdict: loaded, or why not.
    Plugins {
        /// The plugins folder.
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Plugins { plugins } => list_plugins(&plugins),
    }
}

fn list_plugins(dir: &std::path::Path) -> ExitCode {
    let verdicts = match plugin_folder::inspect(dir) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("musicfs: cannot read plugins folder {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let mut loaded = 0;
    for (file, verdict) in &verdicts {
        match verdict {
            Ok(plugin) => {
                loaded += 1;
                let info = plugin.info();
                println!(
                    "{}: loaded: kind {}, version {}, origin-api {}, {} ({})",
                    file.display(),
                    info.kind,
                    info.version,
                    plugin.api_version(),
                    info.class.as_str(),
                    plugin.rustc_version(),
                );
            }
            Err(reason) => println!("{}: rejected: {reason}", file.display()),
        }
    }
    if loaded == 0 {
        eprintln!("musicfs: no plugin loaded from {}", dir.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
