//! HyperCache: a Redis-compatible cache whose hot keys live in RAM and the rest on disk.

pub mod config;
pub mod engine;
