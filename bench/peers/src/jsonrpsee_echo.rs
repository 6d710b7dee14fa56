//! jsonrpsee: a JSON-RPC method `echo` on jsonrpsee's server, called by its WebSocket client,
//! default configurations on both sides.
//!
//! JSON has no byte strings, so the payload travels the way a user would send bytes over
//! JSON-RPC: as a **base64 string** (standard alphabet, padded) — the one parameter of the
//! request and the result of the answer. Both ends do what a handler taking and returning bytes
//! must: the client encodes its bytes for each request and decodes each answer (and checks the
//! decoded length); the server decodes the parameter to bytes and encodes them back. (A
//! `Vec<u8>` parameter would be serialized by serde as a JSON array of numbers, up to four
//! characters per byte instead of 1.33.)

use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use gotalk_bench::load::{drive, payload, Control, LoadOptions, LoadResult, Tally};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::server::{RpcModule, Server};
use jsonrpsee::types::{ErrorCode, ErrorObjectOwned};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};

use crate::Error;

/// The method's handler: the base64 parameter decoded to bytes and encoded back.
fn echo(data: String) -> Result<String, ErrorObjectOwned> {
    let bytes = BASE64
        .decode(data)
        .map_err(|_| ErrorObjectOwned::from(ErrorCode::InvalidParams))?;
    Ok(BASE64.encode(bytes))
}

/// Listens on `addr` (`host:port`), calls `ready` with the `ws://host:port` URL it serves, then
/// serves until the process ends. (jsonrpsee serves HTTP and WebSocket on the same port; the
/// load uses WebSocket.)
pub async fn serve(addr: &str, ready: impl FnOnce(&str)) -> Result<(), Error> {
    let server = Server::builder().build(addr).await?;
    let mut module = RpcModule::new(());
    module.register_method("echo", |params, _, _| echo(params.one()?))?;
    let url = format!("ws://{}", server.local_addr()?);
    let handle = server.start(module);
    ready(&url);
    handle.stopped().await;
    Ok(())
}

/// Runs the load against a [`serve`]r at `url` (`ws://host:port`) and returns what it measured.
pub async fn load(url: &str, opts: &LoadOptions) -> Result<LoadResult, Error> {
    let body = payload(opts.size);
    let mut clients = Vec::new();
    for _ in 0..opts.conns {
        clients.push(Arc::new(WsClientBuilder::default().build(url).await?));
    }
    let res = drive("jsonrpsee", &clients, opts.inflight, opts, |c, ctl| {
        request_loop(c, body.clone(), ctl)
    })
    .await;
    drop(clients);
    res
}

async fn request_loop(
    client: Arc<WsClient>,
    body: Bytes,
    ctl: Arc<Control>,
) -> Result<Tally, Error> {
    let mut tally = Tally::default();
    while !ctl.stopped() {
        let t = Instant::now();
        let answer: String = client
            .request("echo", jsonrpsee::rpc_params![BASE64.encode(&body)])
            .await?;
        let out = BASE64.decode(answer);
        if ctl.recording() {
            tally.hist.record(t.elapsed());
        }
        if out.map_or(true, |out| out.len() != body.len()) {
            tally.bad += 1;
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_decodes_and_encodes() {
        assert_eq!(echo(BASE64.encode(b"abc")).unwrap(), "YWJj");
        assert!(echo("not base64!".into()).is_err());
    }

    #[tokio::test]
    async fn jsonrpsee_echo_round_trips() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve("127.0.0.1:0", move |a| {
            let _ = tx.send(a.to_owned());
        }));
        let url = rx.await.unwrap();
        assert!(url.starts_with("ws://"));
        let opts = LoadOptions::short(2, 4, 3000);
        let r = load(&url, &opts).await.unwrap();
        assert!(r.tally.hist.count() > 0);
        assert_eq!(r.tally.bad, 0);
    }
}
