//! Paths of the workspace's packs, built for `wasm32-wasip2` by this crate's
//! build script. Tests depend on this crate to get packs that are always
//! up to date with their sources and the WIT contract.

include!(concat!(env!("OUT_DIR"), "/packs.rs"));
