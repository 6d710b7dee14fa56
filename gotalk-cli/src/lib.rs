//! The library half of the `gotalk` command-line tool.
//!
//! The binary (`src/main.rs` and `src/cmd/`) parses arguments and wires these modules together;
//! what is worth reusing lives here:
//!
//! | module | what lives there |
//! |---|---|
//! | [`pretty`] | the one message printer used by `proxy`, `listen` and `decode`: text (coloured on a terminal) or JSON lines |
//! | [`escape`] | what a peer sends, made safe to show on a terminal (escape sequences, controls, reordering marks) |
//! | [`wire`] | decoding a captured byte stream (or a conformance transcript) and saying where and why it stops being valid |
//! | [`mod@bench`] | the load loop behind `gotalk bench`: connections × requests in flight, latency histogram, report |
//! | [`util`] | small shared helpers: durations such as `300ms`, payload arguments (`@file`, `-`) |
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bench;
pub mod escape;
pub mod pretty;
pub mod util;
pub mod wire;
