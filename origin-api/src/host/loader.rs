//! Loading one plugin library, with every check in the order that gives the clearest
//! message: is it an ELF shared object, does it carry a MusicFS stamp, was it built
//! for a compatible `origin-api`, does abi_stable agree on the layout, does its
//! constructor succeed.
//!
//! A library that passes is never unloaded (abi_stable leaks it on purpose, and
//! `dlclose` of a Rust cdylib with threads or TLS is unsound). Callers that want to
//! replace a plugin load a copy under a new name; see the host's plugin manager.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use abi_stable::library::lib_header_from_path;
use abi_stable::sabi_trait::TD_Opaque;

use super::log_sink::{host_max_level, HostLogSink};
use super::plugin_origin::PluginOrigin;
use crate::ffi::{FfiLogSink_TO, FfiPluginBox, PluginModuleRef};
use crate::stamp::{
    compatible_range, versions_compatible, PluginStamp, API_VERSION, STAMP_MAGIC, STAMP_SYMBOL,
};
use crate::{Origin, OriginError, OriginResult, PluginInfo, Settings};

/// Why a file in the plugins folder was not loaded. `Display` gives one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// Not an ELF shared object, or the dynamic loader refused it.
    NotSharedLibrary(String),
    /// A shared library without a MusicFS stamp.
    NotAPlugin,
    /// Built against an `origin-api` this host cannot talk to.
    Incompatible {
        /// The version the plugin was built for.
        plugin_api: String,
        /// The versions this host accepts.
        host_accepts: String,
    },
    /// abi_stable's layout check failed.
    Abi(String),
    /// The plugin's constructor failed or panicked.
    Constructor(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotSharedLibrary(why) => write!(f, "not a shared library ({why})"),
            LoadError::NotAPlugin => write!(f, "not a MusicFS plugin (no {STAMP_SYMBOL} symbol)"),
            LoadError::Incompatible {
                plugin_api,
                host_accepts,
            } => write!(
                f,
                "built for origin-api {plugin_api}, host needs {host_accepts} — rebuild it against origin-api {host_accepts}"
            ),
            LoadError::Abi(why) => write!(f, "incompatible plugin ABI: {why}"),
            LoadError::Constructor(why) => write!(f, "failed to start: {why}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// A plugin library that passed every check and whose constructor succeeded.
pub struct LoadedPlugin {
    path: PathBuf,
    info: PluginInfo,
    api_version: String,
    rustc_version: String,
    ffi: Arc<FfiPluginBox>,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("info", &self.info)
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl LoadedPlugin {
    /// The library file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Kind, version, class.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The `origin-api` version it was built against.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The compiler that built it.
    pub fn rustc_version(&self) -> &str {
        &self.rustc_version
    }

    /// Opens one origin of this plugin's kind.
    pub async fn open(&self, settings: Settings) -> OriginResult<Arc<dyn Origin>> {
        let opening = self
            .ffi
            .open(settings.origin_id().into(), settings.to_toml().into());
        let ffi = opening.await.into_result().map_err(OriginError::from)?;
        Ok(Arc::new(PluginOrigin {
            ffi,
            _plugin: self.ffi.clone(),
        }))
    }

    /// Stops the plugin's runtime. Call it after every origin it opened is dropped;
    /// it blocks for up to two seconds while tasks finish.
    pub fn shutdown(&self) {
        self.ffi.shutdown();
    }
}

/// Loads the plugin library at `path`, checks it and runs its constructor.
pub fn load_plugin(path: &Path) -> Result<LoadedPlugin, LoadError> {
    check_elf(path)?;
    super::check_plugin_file(path)?;
    let stamp = read_stamp(path)?;
    let plugin_api = stamp.api_version();
    if !versions_compatible(&plugin_api, API_VERSION) {
        return Err(LoadError::Incompatible {
            plugin_api,
            host_accepts: compatible_range(API_VERSION),
        });
    }

    let header = lib_header_from_path(path).map_err(|e| LoadError::Abi(one_line(&e)))?;
    check_layouts(header)?;
    // SAFETY: `check_layouts` found the plugin's root module layout compatible
    // with the host's, in one direction or the other (see `crate::ffi`).
    let module = unsafe { header.init_root_module_with_unchecked_layout::<PluginModuleRef>() }
        .map_err(|e| LoadError::Abi(one_line(&e)))?;

    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let log = HostLogSink::new(file_name);
    let init = module.init();
    let ffi = init(
        FfiLogSink_TO::from_value(log.clone(), TD_Opaque),
        host_max_level(),
    )
    .into_result()
    .map_err(|e| LoadError::Constructor(OriginError::from(e).message().to_owned()))?;
    let info: PluginInfo = ffi.info().into();
    log.rename(info.kind.clone());

    Ok(LoadedPlugin {
        path: path.to_owned(),
        info,
        api_version: plugin_api,
        rustc_version: stamp.rustc_version(),
        ffi: Arc::new(ffi),
    })
}

/// abi_stable's layout check, both ways: a plugin at least as new as the host
/// (its types extend the host's) or older (the host's extend its own) loads; see
/// the 1.x rule in `crate::ffi`. The message is the check against the host as it is.
fn check_layouts(header: &abi_stable::library::LibHeader) -> Result<(), LoadError> {
    use abi_stable::abi_stability::abi_checking::{
        check_layout_compatibility_with_globals as check, CheckingGlobals,
    };
    let host = <PluginModuleRef as abi_stable::StableAbi>::LAYOUT;
    let plugin = header
        .layout()
        .ok_or_else(|| LoadError::Abi("the library carries no layout to check".into()))?;
    // Each check on its own: abi_stable's process-wide globals merge the prefix
    // types of every library checked, so after a 1.0 plugin a 1.1 one would be
    // held to 1.0's fields. Plugins never exchange objects; the host is the one
    // side each of them must agree with.
    let newer_or_same = check(host, plugin, &CheckingGlobals::new());
    if newer_or_same.is_ok() || check(plugin, host, &CheckingGlobals::new()).is_ok() {
        return Ok(());
    }
    Err(LoadError::Abi(newer_or_same.map_or_else(
        |e| last_error_line(&e.to_string()),
        |()| String::new(),
    )))
}

/// The line of a layout error that says what differs ("Error:mismatched type").
fn last_error_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.iter().rposition(|l| l.starts_with("Error:")) {
        Some(at) => lines[at..].join(" "),
        None => one_line(&text),
    }
}

fn check_elf(path: &Path) -> Result<(), LoadError> {
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    match read {
        Ok(()) if &magic == b"\x7fELF" => Ok(()),
        Ok(()) => Err(LoadError::NotSharedLibrary("not an ELF file".into())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(LoadError::NotSharedLibrary("file too short".into()))
        }
        Err(e) => Err(LoadError::NotSharedLibrary(e.to_string())),
    }
}

fn read_stamp(path: &Path) -> Result<PluginStamp, LoadError> {
    // SAFETY: loading runs the library's initialisers; the plugins folder is trusted
    // to hold libraries, and this is the documented cost of looking inside one.
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|e| LoadError::NotSharedLibrary(one_line(&e)))?;
    let symbol = format!("{STAMP_SYMBOL}\0");
    // SAFETY: the symbol, when present, is a `PluginStamp` static: its layout is
    // fixed (magic first) and checked below before anything else is trusted.
    let stamp = unsafe {
        let address = library
            .get::<*const PluginStamp>(symbol.as_bytes())
            .map_err(|_| LoadError::NotAPlugin)?;
        std::ptr::read(*address)
    };
    if stamp.magic != STAMP_MAGIC {
        return Err(LoadError::NotAPlugin);
    }
    Ok(stamp)
}

fn one_line(err: &dyn fmt::Display) -> String {
    err.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
