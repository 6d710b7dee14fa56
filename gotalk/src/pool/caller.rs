//! The typed clients of `#[gotalk::service]` over many peers: [`Pool`] and [`KeepAlive`] are
//! [`Caller`]s, so `GreeterClient::new(&pool)` spreads a service's calls over its responders
//! (with the pool's rules for RetryResults, lost connections and deadlines), and
//! `GreeterClient::new(&conn)` survives reconnects.

use std::future::Future;

use bytes::Bytes;

use crate::error::Result;
use crate::service::Caller;
use crate::stream::{StreamReceiver, StreamSender};

use super::{KeepAlive, Pool};

impl Caller for Pool {
    async fn call(&self, op: &str, payload: Bytes) -> Result<Bytes> {
        self.buffer_request(op, payload).await
    }

    fn notify(&self, name: &str, payload: Bytes) -> impl Future<Output = Result<()>> + Send {
        self.buffer_notify(name, payload)
    }

    fn stream(
        &self,
        op: &str,
    ) -> impl Future<Output = Result<(StreamSender, StreamReceiver)>> + Send {
        self.stream_request(op)
    }
}

impl Caller for KeepAlive {
    async fn call(&self, op: &str, payload: Bytes) -> Result<Bytes> {
        self.buffer_request(op, payload).await
    }

    fn notify(&self, name: &str, payload: Bytes) -> impl Future<Output = Result<()>> + Send {
        self.buffer_notify(name, payload)
    }

    fn stream(
        &self,
        op: &str,
    ) -> impl Future<Output = Result<(StreamSender, StreamReceiver)>> + Send {
        self.stream_request(op)
    }
}
