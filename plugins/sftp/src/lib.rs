//! MusicFS origin plugin for SSH servers with SFTP (`type = "sftp"`): a
//! seedbox, a home server, a NAS with SSH.
//!
//! Work in progress on this branch: the settings. The origin itself (russh and
//! russh-sftp, a connection pool, pipelined reads, host key checks) comes next.

#![allow(dead_code)]

mod connection;
mod host_key;
mod sftp_settings;
