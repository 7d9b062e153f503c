//! A library that stamps itself as built for `origin-api` 0.0.1, as a plugin built
//! against an older, ABI-incompatible release would. The host must name it and
//! refuse it before looking any further.

#[unsafe(no_mangle)]
pub static MUSICFS_PLUGIN_STAMP: origin_api::__private::PluginStamp =
    origin_api::__private::PluginStamp::claiming("0.0.1");
