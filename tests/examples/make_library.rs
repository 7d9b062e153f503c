//! Makes a generated library of tagged FLACs for trying MusicFS at scale:
//!
//! ```sh
//! cargo run --release -p musicfs-tests --example make_library -- DIR TRACKS
//! ```
//!
//! 20 tracks an album, 200 an artist, each a real FLAC (`ffprobe` accepts it)
//! with its own title, artist and album; a million take about 2 GB.

use musicfs_tests::bench_support::{tagged_library, MAX_TAGGED_TRACKS};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(tracks)) = (args.first(), args.get(1)) else {
        eprintln!("usage: make_library DIR TRACKS (at most {MAX_TAGGED_TRACKS})");
        std::process::exit(2);
    };
    let tracks: usize = match tracks.parse() {
        Ok(n) if n <= MAX_TAGGED_TRACKS => n,
        _ => {
            eprintln!(
                "make_library: TRACKS must be a number up to {MAX_TAGGED_TRACKS}, not {tracks}"
            );
            std::process::exit(2);
        }
    };
    let started = std::time::Instant::now();
    tagged_library(std::path::Path::new(dir), tracks);
    eprintln!(
        "make_library: {tracks} tracks in {dir} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
