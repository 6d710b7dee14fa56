//! # gotalk-bench-peers
//!
//! The Rust RPC crates a user would pick instead of gotalk, doing the echo of the benchmark
//! matrix: [`tarpc_echo`] (tarpc over TCP with its tokio-serde bincode transport) and
//! [`jsonrpsee_echo`] (jsonrpsee's WebSocket server and client). Each has a server and a load
//! function that keeps `inflight` echo requests outstanding on each of `conns` connections, one
//! tokio task per request slot, exactly like the gotalk load of `gotalk_bench::echo`; the
//! measurement ([`Control`](gotalk_bench::load::Control), [`Tally`](gotalk_bench::load::Tally))
//! and the `RESULT` line ([`LoadResult`](gotalk_bench::load::LoadResult)) are `gotalk-bench`'s
//! own, so the matrix reads and compares them like any other column.
//!
//! This crate is outside the main workspace (its own `[workspace]`, its own `Cargo.lock`) so
//! that tarpc's and jsonrpsee's dependency trees never slow down the workspace's build or CI;
//! `bench/matrix.sh --peers` builds it.
#![forbid(unsafe_code)]

pub mod jsonrpsee_echo;
pub mod tarpc_echo;

/// Any error of a peer's server or load.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
