//! gotalk: async bidirectional RPC over one connection (protocol v1).
#![forbid(unsafe_code)]
pub mod codec;
pub mod error;
pub mod frame;
pub use error::{CloseReason, Error, HandlerError, ProtocolErrorCode, Result, Side};
