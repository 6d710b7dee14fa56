//! The generated code of `#[gotalk::service]` against the recorded reference transcripts
//! (`shared/conformance`), over real TCP, in both roles: the typed client must send the
//! recorded client bytes to a server playing the recorded answers, and the typed server must
//! answer the recorded client bytes with the recorded server bytes. Same op names, same JSON:
//! a typed peer and the reference Go peer cannot tell each other from an untyped one.
//!
//! The transcripts whose payloads are JSON are covered (`greet`, `notify`, `fail`,
//! `unknown-op`); the others carry raw bytes (`echo`, `stream-echo`), which a typed method does
//! not model.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use gotalk::codec::{Decoded, Decoder};
use gotalk::frame::{Message, RequestId};
use gotalk::{Config, Error, HandlerError, Handlers, Server, Sock};
use serde::{Deserialize, Serialize};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct GreetIn {
    name: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct GreetOut {
    greeting: String,
}

/// The reference client sends `{}` to `fail` and `no-such-op`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Empty {}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
struct Ping {
    n: u32,
}

/// The JSON operations of the reference "gopeer" server.
#[gotalk::service(rename_all = "kebab-case")]
trait GoPeer {
    async fn greet(&self, input: GreetIn) -> GreetOut;
    /// Sends `ping` to the caller, then answers "ok".
    async fn notify_me(&self, sock: &Sock) -> Result<String, HandlerError>;
    async fn fail(&self, input: Empty) -> Result<(), HandlerError>;
}

/// What the reference client handles.
#[gotalk::service]
trait GoClient {
    fn ping(&self, ping: Ping);
}

/// An operation nobody serves.
#[gotalk::service(rename_all = "kebab-case")]
trait Missing {
    async fn no_such_op(&self, input: Empty) -> Result<(), HandlerError>;
}

struct GoPeerImpl;

impl GoPeer for GoPeerImpl {
    async fn greet(&self, input: GreetIn) -> GreetOut {
        GreetOut {
            greeting: format!("Hello {}", input.name),
        }
    }

    async fn notify_me(&self, sock: &Sock) -> Result<String, HandlerError> {
        GoClientClient::new(sock).ping(Ping { n: 1 }).await?;
        Ok("ok".into())
    }

    async fn fail(&self, _: Empty) -> Result<(), HandlerError> {
        Err(HandlerError::msg("nope"))
    }
}

#[derive(Default, Clone)]
struct Pings(Arc<Mutex<Vec<Ping>>>);

impl GoClient for Pings {
    fn ping(&self, ping: Ping) {
        self.0.lock().unwrap().push(ping);
    }
}

fn decode_one(raw: &[u8]) -> Option<Message> {
    let mut buf = BytesMut::from(raw);
    match Decoder::without_version(u32::MAX).decode(&mut buf) {
        Ok(Some(Decoded::Message(m))) => Some(m),
        _ => None,
    }
}

fn with_id(m: &Message, new: RequestId) -> Message {
    let mut m = m.clone();
    match &mut m {
        Message::SingleRequest { id, .. }
        | Message::SingleResult { id, .. }
        | Message::ErrorResult { id, .. } => *id = new,
        other => panic!("not in these transcripts: {other:?}"),
    }
    m
}

// ---- our typed server, the recorded client ---------------------------------------------------

async fn replay_against_typed_server(name: &str) {
    let t = load(name);
    let mut handlers = Handlers::new();
    handlers.service(GoPeerServer::new(GoPeerImpl));
    let config = Config::new().handlers(handlers).heartbeat_interval(None);
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let stream = TcpStream::connect(server.local_addr().to_string().trim_start_matches("tcp://"))
        .await
        .unwrap();
    let mut peer = RawPeer::new(stream);
    for &(c2s, i) in &t.order {
        if c2s {
            peer.send(&t.c2s[i]).await;
        } else {
            let (_, got) = peer.next().await.expect("server closed early");
            assert_eq!(show(&got), show(&t.s2c[i]), "{name}: s2c[{i}]");
        }
    }
    peer.io.shutdown().await.ok();
    let rest: Vec<String> = peer.rest().await.iter().map(|m| show(m)).collect();
    assert!(rest.is_empty(), "{name}: more than recorded: {rest:?}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn typed_server_greet() {
    replay_against_typed_server("greet").await;
}

#[tokio::test]
async fn typed_server_notify() {
    replay_against_typed_server("notify").await;
}

#[tokio::test]
async fn typed_server_fail() {
    replay_against_typed_server("fail").await;
}

#[tokio::test]
async fn typed_server_unknown_op() {
    replay_against_typed_server("unknown-op").await;
}

// ---- our typed client, the recorded server ---------------------------------------------------

/// Plays the recorded server side; what the client sends must be the recorded client bytes,
/// with our own request IDs.
async fn scripted_server(t: Transcript, listener: TcpListener) {
    let (stream, _) = listener.accept().await.unwrap();
    let mut peer = RawPeer::new(stream);
    let name = &t.name;
    let mut ids: HashMap<RequestId, RequestId> = HashMap::new();
    for &(c2s, i) in &t.order {
        if c2s {
            let want = &t.c2s[i];
            let (_, got) = peer.next().await.expect("client closed early");
            match (decode_one(want), decode_one(&got)) {
                (Some(w), Some(g)) if w.id().is_some() => {
                    let ours = g.id().unwrap();
                    assert_eq!(with_id(&w, ours), g, "{name}: c2s[{i}]");
                    ids.insert(w.id().unwrap(), ours);
                }
                _ => assert_eq!(show(&got), show(want), "{name}: c2s[{i}]"),
            }
        } else {
            let raw = &t.s2c[i];
            match decode_one(raw) {
                Some(m) if m.id().is_some() => {
                    let ours = ids[&m.id().unwrap()];
                    peer.send(&with_id(&m, ours).to_bytes()).await;
                }
                _ => peer.send(raw).await,
            }
        }
    }
    let rest: Vec<String> = peer
        .rest()
        .await
        .iter()
        .filter(|m| !is_heartbeat(m))
        .map(|m| show(m))
        .collect();
    assert!(rest.is_empty(), "{name}: client sent more: {rest:?}");
}

async fn replay_typed_client(name: &str) {
    let t = load(name);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let script = tokio::spawn(scripted_server(t, listener));

    let pings = Pings::default();
    let mut handlers = Handlers::new();
    handlers.service(GoClientServer::new(pings.clone()));
    let config = Config::new().handlers(handlers).heartbeat_interval(None);
    let sock = gotalk::connect_with(&addr, &config).await.unwrap();
    let peer = GoPeerClient::new(&sock);
    let run = async {
        match name {
            "greet" => {
                let out = peer
                    .greet(GreetIn {
                        name: "Rasmus".into(),
                    })
                    .await;
                assert_eq!(
                    out.unwrap(),
                    GreetOut {
                        greeting: "Hello Rasmus".into()
                    }
                );
            }
            "notify" => {
                assert_eq!(peer.notify_me().await.unwrap(), "ok");
                assert_eq!(*pings.0.lock().unwrap(), [Ping { n: 1 }]);
            }
            "fail" => {
                let e = peer.fail(Empty {}).await.unwrap_err();
                assert!(matches!(&e, Error::Remote(m) if m == "nope"), "{e:?}");
            }
            "unknown-op" => {
                let e = MissingClient::new(&sock)
                    .no_such_op(Empty {})
                    .await
                    .unwrap_err();
                let want = "unknown operation \"no-such-op\"";
                assert!(matches!(&e, Error::Remote(m) if m == want), "{e:?}");
            }
            other => panic!("no scenario for {other}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("hang guard");
    sock.close();
    sock.closed().await;
    script
        .await
        .expect("the scripted server found a difference");
}

#[tokio::test]
async fn typed_client_greet() {
    replay_typed_client("greet").await;
}

#[tokio::test]
async fn typed_client_notify() {
    replay_typed_client("notify").await;
}

#[tokio::test]
async fn typed_client_fail() {
    replay_typed_client("fail").await;
}

#[tokio::test]
async fn typed_client_unknown_op() {
    replay_typed_client("unknown-op").await;
}
