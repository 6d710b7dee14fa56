//! tarpc: a service with one RPC `echo(data: Bytes) -> Bytes` over TCP with tarpc's
//! tokio-serde **bincode** transport (length-delimited frames), default client and server
//! configurations.
//!
//! The payload is a [`bytes::Bytes`] (its `serde` feature), which serde hands to bincode as one
//! byte string: a length and a copy of the bytes. A plain `Vec<u8>` would be serialized by
//! serde as a sequence, one `u8` element at a time: at 1 MiB that cost about 7× the CPU per
//! request on each side (see BENCHMARKS.md, "Against tarpc and jsonrpsee"). The client clones
//! its payload `Bytes` for each request, as the gotalk load does.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use gotalk_bench::load::{drive, payload, Control, LoadOptions, LoadResult, Tally};
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context};

use crate::Error;

/// The echo service. (The `tarpc::service` attribute also generates the request and response
/// enums, the `ServeEcho` server and the `EchoClient` client.)
#[allow(missing_docs)] // for the items the macro generates
#[tarpc::service]
pub trait Echo {
    /// Returns `data`.
    async fn echo(data: Bytes) -> Bytes;
}

/// The server's implementation of [`Echo`].
#[derive(Debug, Clone, Copy)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: context::Context, data: Bytes) -> Bytes {
        data
    }
}

/// Listens on `addr` (`host:port`), calls `ready` with the address it listens on, then serves
/// every connection on its own task until the process ends.
pub async fn serve(addr: &str, ready: impl FnOnce(&str)) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    ready(&listener.local_addr()?.to_string());
    let mut incoming = tarpc::serde_transport::tcp::listen_on(listener, Bincode::default).await?;
    while let Some(transport) = incoming.next().await {
        let Ok(transport) = transport else { continue };
        tokio::spawn(
            BaseChannel::with_defaults(transport)
                .execute(EchoServer.serve())
                .for_each(|answer| async {
                    tokio::spawn(answer);
                }),
        );
    }
    Ok(())
}

/// Runs the load against a [`serve`]r at `addr` and returns what it measured.
pub async fn load(addr: &str, opts: &LoadOptions) -> Result<LoadResult, Error> {
    let body = payload(opts.size);
    let mut clients = Vec::new();
    for _ in 0..opts.conns {
        let transport = tarpc::serde_transport::tcp::connect(addr, Bincode::default).await?;
        clients.push(EchoClient::new(client::Config::default(), transport).spawn());
    }
    let res = drive("tarpc", &clients, opts.inflight, opts, |c, ctl| {
        request_loop(c, body.clone(), ctl)
    })
    .await;
    drop(clients);
    res
}

async fn request_loop(client: EchoClient, body: Bytes, ctl: Arc<Control>) -> Result<Tally, Error> {
    let mut tally = Tally::default();
    while !ctl.stopped() {
        let t = Instant::now();
        let out = client.echo(context::current(), body.clone()).await?;
        if ctl.recording() {
            tally.hist.record(t.elapsed());
        }
        if out.len() != body.len() {
            tally.bad += 1;
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tarpc_echo_round_trips() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve("127.0.0.1:0", move |a| {
            let _ = tx.send(a.to_owned());
        }));
        let addr = rx.await.unwrap();
        let opts = LoadOptions::short(2, 4, 3000);
        let r = load(&addr, &opts).await.unwrap();
        assert!(r.tally.hist.count() > 0);
        assert_eq!(r.tally.bad, 0);
    }
}
