//! What a plugin process may do, beyond what its own code needs.
//!
//! Cheap confinement with Landlock, applied by the plugin process to itself
//! before it loads the library (so the plugin's constructor runs confined too):
//!
//! - **No writes to files**: creating, writing, truncating, renaming or removing
//!   any file or folder is refused everywhere but `/dev` (`/dev/null`, a
//!   terminal). The cache, the index, the config and the plugins folder are
//!   out of a plugin's reach; reading is not restricted (a local origin reads
//!   its folders, an SFTP origin its key and `known_hosts`).
//! - **No signals out**: it cannot signal a process outside its own domain (the
//!   host, other plugins; kernel 6.12+), nor reach abstract Unix sockets
//!   outside it.
//! - `no_new_privs`: nothing it runs gains privileges (setuid binaries).
//!
//! Its network is not restricted: a remote origin needs its server, and the
//! host cannot know which. A kernel without Landlock runs the plugin
//! unconfined and says so in the log.

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, ABI,
};

/// Set by the host when the process should confine itself.
pub const SANDBOX_ENV: &str = "MUSICFS_PLUGIN_SANDBOX";

/// Confines this process; how far the kernel enforced it.
pub fn confine() -> Result<&'static str, String> {
    let abi = ABI::V6;
    let writes = AccessFs::from_write(abi);
    let status = Ruleset::default()
        .handle_access(writes)
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(["/dev"], writes)))
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partly enforced (an older kernel)",
        RulesetStatus::NotEnforced => "not enforced (no Landlock in this kernel)",
    })
}
