//! Plugins in processes of their own.
//!
//! A plugin is a `cdylib` built against `origin-api`, and until it is loaded
//! nothing is known of it but its stamp. A bug in it that Rust cannot catch
//! (an abort, a segfault, C code that runs out of memory, a blocking call that
//! never returns) used to end the host and with it every origin's mount. So
//! each plugin runs in a child process of its own: the same `musicfs`
//! executable, started as `musicfs plugin-host LIBRARY`, which loads the
//! library exactly as the host did (stamp, layout check, constructor) and serves
//! its origins over a Unix socket. The host sees each origin as an ordinary
//! `dyn Origin` ([`RemoteOrigin`]), so the call gate, the router, failover and
//! the conformance suite are unchanged.
//!
//! - [`wire`]: the frames. Bytes of reads travel as raw payload, written from
//!   the plugin's buffer and read into the host's, once each way.
//! - [`pieces`]: the bytes of reads in memory both processes map, so a piece
//!   is copied once (into a slot, by the child) and read where it is.
//! - [`child`]: the plugin process's side.
//! - [`connection`]: the host's side of one process: calls waiting for
//!   answers, streams with credit (the child sends at most [`STREAM_CREDIT`]
//!   bytes ahead of what the host has taken), watches, pings.
//! - [`supervisor`]: [`PluginProcess`], one plugin kept running. When its
//!   process ends (exit, signal, the OOM killer) every call waiting on it fails
//!   at once with how it ended, its origins answer "restarting" (unhealthy, so
//!   reads fail over or fail fast), and it is started again after a pause that
//!   doubles from 100 ms to 30 s while it keeps failing. A process is also
//!   killed and started again when it is stuck: no answer to pings for 5 s, or
//!   calls given up at their deadline with no answer to anything for
//!   `hang_after` (two call deadlines).
//! - [`remote_origin`]: an origin that outlives its process: opened again in
//!   each new one, its watches started again and told to look at everything
//!   (changes made while nothing watched are not known otherwise).
//! - [`sandbox`]: what a plugin process may not do.
//!
//! What is not carried over a restart: calls in flight (they failed), a
//! stream's position (the reader's next request starts a new one). The cache,
//! the tree, the index and every other plugin are in other processes' hands
//! and do not notice.

pub mod child;
pub mod connection;
pub mod pieces;
pub mod remote_origin;
pub mod sandbox;
pub mod supervisor;
pub mod wire;

pub use connection::STREAM_CREDIT;
pub use remote_origin::RemoteOrigin;
pub use supervisor::{PluginProcess, ProcessOptions, ProcessReport, PLUGIN_HOST_COMMAND};
