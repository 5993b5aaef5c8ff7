//! `envpack-host`'s integration tests, one binary: the sandbox, the
//! compiled-code cache, the registry, and untrusted bytes fed to every parser.

mod cache;
mod registry;
mod sandbox;
mod untrusted_bytes;
