//! What carries broadcasts between processes: the [`Adapter`] trait an engine implements (Redis
//! is `redis.rs`), the [`Inbox`] it delivers to, and what it reports ([`AdapterStats`]).

use std::fmt;
use std::sync::Weak;

use bytes::Bytes;

use crate::error::Result;

/// What an [`Adapter`] reports about its link to the other processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdapterStats {
    /// Whether it is connected to its engine right now.
    pub connected: bool,
    /// Broadcasts sent to the engine.
    pub published: u64,
    /// Broadcasts dropped instead (not connected, queue full, or lost with a connection).
    pub dropped: u64,
    /// Messages received from the engine.
    pub received: u64,
    /// Connection attempts that failed and connections lost.
    pub failures: u64,
    /// Connections made again after a failure.
    pub reconnects: u64,
}

/// Carries broadcasts between the hubs of several processes: an engine such as Redis pub/sub
/// (`RedisAdapter`, feature `redis`), NATS or Postgres `LISTEN/NOTIFY`.
///
/// The adapter moves opaque messages: the hub encodes each broadcast (with its node id and a
/// sequence number) and decodes what the adapter delivers. Every hub sharing the engine (and
/// the adapter's channel) must get every message, its own included; the hub drops its own.
pub trait Adapter: Send + Sync + fmt::Debug + 'static {
    /// Starts the adapter: from now on it delivers every message from the engine to `inbox`.
    /// Called once, by [`HubBuilder::build`](super::HubBuilder::build), within a Tokio runtime.
    fn start(&self, inbox: Inbox) -> Result<()>;

    /// Hands `message` to the engine without waiting, in the order of the calls. Returns
    /// `false` if it was dropped instead (say, while the engine is unreachable); it must never
    /// block nor hold an unbounded number of messages.
    fn publish(&self, message: Bytes) -> bool;

    /// What the adapter reports about itself.
    fn stats(&self) -> AdapterStats;
}

/// Where an [`Adapter`] delivers the messages it receives: the hub that started it.
#[derive(Clone)]
pub struct Inbox {
    hub: Weak<dyn Receive>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("open", &!self.is_closed())
            .finish()
    }
}

/// What an [`Inbox`] delivers to: a hub.
pub(super) trait Receive: Send + Sync {
    /// Delivers a message from the engine to the hub's members.
    fn receive(&self, message: &[u8]);
}

impl Inbox {
    /// An inbox for `hub`, which it does not keep alive.
    pub(super) fn new(hub: Weak<dyn Receive>) -> Inbox {
        Inbox { hub }
    }

    /// Delivers a message from the engine to the hub's members (synchronously, without
    /// waiting for any of them). Returns `false` once the hub is gone: the adapter should stop.
    pub fn deliver(&self, message: &[u8]) -> bool {
        match self.hub.upgrade() {
            Some(hub) => {
                hub.receive(message);
                true
            }
            None => false,
        }
    }

    /// Whether the hub is gone.
    pub fn is_closed(&self) -> bool {
        self.hub.strong_count() == 0
    }
}
