//! The read path, from an open file down to the cache: what to read from
//! which replica, how far ahead, and for how long. The cache below
//! (`crate::cache`) serves the bytes it holds and fills itself from a source;
//! this decides, per open file, what it asks the cache for.
//!
//! - [`reader`] holds the open files and answers their reads.
//! - [`failover`] tries a file's replicas in turn, under one deadline.

pub mod failover;
pub mod reader;
