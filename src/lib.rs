//! HyperCache: a Redis-compatible cache whose hot keys live in RAM and the rest on disk.

pub mod audit;
pub mod commands;
pub mod config;
pub mod datadir;
pub mod engine;
pub mod metrics;
pub mod ops;
pub mod protocol;
pub mod server;
pub mod tls;
