//! The read path, from an open file down to the cache: what to read from
//! which replica, how far ahead, and for how long. The cache below
//! (`crate::cache`) serves the bytes it holds and fills itself from a source;
//! this decides, per reader, what it asks the cache for.
//!
//! - [`reader`] answers the kernel's reads of open files (its essay says how
//!   a read goes), each through its session.
//! - [`session`] is one reader of one file version: its replicas in the
//!   cache, access pattern, read-ahead, and the one place a fetch goes to an
//!   origin. Players, a scan's tag reads and pins all read through sessions.
//! - [`open_files`] finds an open file's session by its handle.
//! - [`access`] is the access pattern: sequential or seeking, and the window.
//! - [`failover`] tries a file's replicas in turn, under one deadline.
//! - [`timeouts`] remembers a read that ran out its deadline, for a second.

pub mod access;
pub mod failover;
pub mod open_files;
pub mod reader;
pub mod session;
pub mod timeouts;
