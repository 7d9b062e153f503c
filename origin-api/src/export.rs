//! Plugin side of the boundary: adapters that present an author's [`Plugin`] and
//! [`Origin`] as the FFI traits, and the [`export_plugin!`](crate::export_plugin)
//! macro that exports them from a cdylib.
//!
//! abi_stable's own `#[export_root_module]` attribute expands to `::abi_stable::`
//! paths, which would force every plugin to depend on abi_stable. The macro here
//! expands to the same static (a `LibHeader` under abi_stable's mangled symbol name)
//! through paths re-exported by this crate, so a plugin's Cargo.toml names only
//! `origin-api`. A unit test keeps the hard-coded symbol name equal to abi_stable's.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RErr, ROk, ROption, RString, RVec};
use async_ffi::FfiFuture;

use crate::ffi::{
    FfiError, FfiEventSinkBox, FfiHealth, FfiListPage, FfiLogSinkBox, FfiMetadata, FfiOrigin,
    FfiOriginBox, FfiOrigin_TO, FfiPlugin, FfiPluginBox, FfiPluginInfo, FfiPlugin_TO,
    FfiReadStreamBox, FfiResult, FfiWatchHandle, FfiWatchHandleBox, FfiWatchHandle_TO,
    PluginModule, PluginModuleRef,
};
use crate::path::check_relative_path;
use crate::plugin_runtime::{self, panicked, spawn_call};
use crate::{EventSink, Origin, OriginError, Plugin, PluginInfo, Settings, WatchHandle};

#[cfg(test)]
/// abi_stable's mangled name for the root module loader
/// (`abi_stable::library::ROOT_MODULE_LOADER_NAME`).
pub const ROOT_MODULE_LOADER_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Builds the root module around the plugin's `init` function.
pub fn plugin_module(
    init: extern "C" fn(FfiLogSinkBox, u8) -> FfiResult<FfiPluginBox>,
) -> PluginModuleRef {
    PluginModule { init }.leak_into_prefix()
}

/// The body of every plugin's exported `init`: installs logging, runs the author's
/// constructor (catching a panic), and wraps the plugin for the host.
pub fn init_plugin(
    log: FfiLogSinkBox,
    max_level: u8,
    construct: impl FnOnce() -> Result<Box<dyn Plugin>, String>,
) -> FfiResult<FfiPluginBox> {
    crate::log_forward::install(log, max_level);
    let built = catch_unwind(AssertUnwindSafe(|| {
        construct().map(|plugin| {
            let info = plugin.info();
            (plugin, info)
        })
    }));
    match built {
        Ok(Ok((plugin, info))) => ROk(FfiPlugin_TO::from_value(
            PluginAdapter {
                plugin: Arc::from(plugin),
                info,
            },
            TD_Opaque,
        )),
        Ok(Err(message)) => RErr(FfiError::from(OriginError::other(format!(
            "plugin constructor failed: {message}"
        )))),
        Err(panic) => RErr(FfiError::from(panicked("its constructor", &*panic))),
    }
}

struct PluginAdapter {
    plugin: Arc<dyn Plugin>,
    info: PluginInfo,
}

impl FfiPlugin for PluginAdapter {
    fn info(&self) -> FfiPluginInfo {
        self.info.clone().into()
    }

    fn open(
        &self,
        origin_id: RString,
        settings_toml: RString,
    ) -> FfiFuture<FfiResult<FfiOriginBox>> {
        let plugin = self.plugin.clone();
        spawn_call("open", async move {
            let settings = Settings::from_toml(&origin_id, &settings_toml)?;
            let origin: Arc<dyn Origin> = Arc::from(plugin.open(settings).await?);
            Ok(FfiOrigin_TO::from_value(
                OriginAdapter { origin },
                TD_Opaque,
            ))
        })
    }

    fn shutdown(&self) {
        plugin_runtime::shutdown();
    }
}

struct OriginAdapter {
    origin: Arc<dyn Origin>,
}

impl FfiOrigin for OriginAdapter {
    fn stat(&self, path: RString) -> FfiFuture<FfiResult<FfiMetadata>> {
        let origin = self.origin.clone();
        spawn_call("stat", async move {
            check_relative_path(&path)?;
            Ok(origin.stat(&path).await?.into())
        })
    }

    fn list(
        &self,
        dir: RString,
        cursor: ROption<RString>,
        limit: u32,
    ) -> FfiFuture<FfiResult<FfiListPage>> {
        let origin = self.origin.clone();
        spawn_call("list", async move {
            check_relative_path(&dir)?;
            let cursor = cursor.into_option();
            let page = origin.list(&dir, cursor.as_deref(), limit.max(1)).await?;
            Ok(page.into())
        })
    }

    fn read(&self, path: RString, offset: u64, len: u32) -> FfiFuture<FfiResult<RVec<u8>>> {
        let origin = self.origin.clone();
        spawn_call("read", async move {
            check_relative_path(&path)?;
            Ok(origin.read(&path, offset, len).await?.into())
        })
    }

    fn health(&self) -> FfiFuture<FfiResult<FfiHealth>> {
        let origin = self.origin.clone();
        spawn_call("health", async move { Ok(origin.health().await.into()) })
    }

    fn read_version(
        &self,
        path: RString,
        offset: u64,
        len: u32,
        expected: ROption<RString>,
    ) -> FfiFuture<FfiResult<RVec<u8>>> {
        let origin = self.origin.clone();
        spawn_call("read", async move {
            check_relative_path(&path)?;
            let expected = expected.into_option();
            let bytes = origin
                .read_version(&path, offset, len, expected.as_deref())
                .await?;
            Ok(bytes.into())
        })
    }

    fn read_stream(
        &self,
        path: RString,
        offset: u64,
        len: u64,
        expected: ROption<RString>,
        credit: u32,
    ) -> ROption<FfiReadStreamBox> {
        let expected = expected.into_option().map(RString::into_string);
        ROption::RSome(crate::stream_export::start(
            self.origin.clone(),
            path,
            offset,
            len,
            expected,
            credit,
        ))
    }

    fn watch_stats(&self) -> ROption<crate::ffi::FfiPollStats> {
        // Author code on the host's thread: a panic here answers nothing.
        let origin = &self.origin;
        catch_unwind(AssertUnwindSafe(|| origin.watch_stats()))
            .ok()
            .flatten()
            .map(Into::into)
            .into()
    }

    fn watch(&self, sink: FfiEventSinkBox) -> FfiFuture<FfiResult<FfiWatchHandleBox>> {
        let origin = self.origin.clone();
        spawn_call("watch", async move {
            let sink = EventSink::new(move |event| sink.send(event.into()));
            let handle = origin.watch(sink.clone()).await?;
            Ok(FfiWatchHandle_TO::from_value(
                WatchAdapter {
                    sink,
                    handle: Mutex::new(Some(handle)),
                },
                TD_Opaque,
            ))
        })
    }
}

/// Closes the sink before stopping the author's watch, so no event gets out after
/// `stop` returns even if the author's watcher is slow to notice.
struct WatchAdapter {
    sink: EventSink,
    handle: Mutex<Option<WatchHandle>>,
}

impl FfiWatchHandle for WatchAdapter {
    fn stop(&self) {
        self.sink.close();
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            // Dropping a watcher may touch tokio (an aborted task), so do it in the
            // plugin's runtime context; a panic here must not cross the boundary.
            let runtime = plugin_runtime::handle();
            let _entered = runtime.enter();
            let _ = catch_unwind(AssertUnwindSafe(|| handle.stop()));
        }
    }
}

impl Drop for WatchAdapter {
    fn drop(&mut self) {
        FfiWatchHandle::stop(self);
    }
}

/// Exports a plugin from a `cdylib`. Give it a constructor: a function (or closure)
/// returning your [`Plugin`], or a `Result` of it whose error says why it cannot start.
///
/// ```ignore
/// origin_api::export_plugin!(MyPlugin::new);
/// ```
///
/// It exports two symbols: `MUSICFS_PLUGIN_STAMP` (which `origin-api` version built
/// the plugin, checked before anything else) and abi_stable's root module loader.
#[macro_export]
macro_rules! export_plugin {
    ($constructor:expr) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub static MUSICFS_PLUGIN_STAMP: $crate::__private::PluginStamp =
            $crate::__private::PluginStamp::CURRENT;

        #[doc(hidden)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static MUSICFS_ROOT_MODULE_LOADER: $crate::__private::LibHeader = {
            extern "C" fn musicfs_init(
                log: $crate::__private::FfiLogSinkBox,
                max_level: u8,
            ) -> $crate::__private::FfiResult<$crate::__private::FfiPluginBox> {
                $crate::__private::init_plugin(log, max_level, || {
                    $crate::IntoPlugin::into_plugin(($constructor)())
                })
            }
            fn musicfs_root_module() -> $crate::__private::PluginModuleRef {
                $crate::__private::plugin_module(musicfs_init)
            }
            extern "C" fn musicfs_erased_module() -> $crate::__private::RootModuleResult {
                $crate::__private::call_root_module_loader(musicfs_root_module)
            }
            // SAFETY: the constructor returns the module type named here.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::__private::PluginModuleRef>(
                    musicfs_erased_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
