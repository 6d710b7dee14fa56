//! The server that the browser end-to-end tests (`gotalk/js/e2e/`) drive from headless
//! Chromium. It serves an empty page at `/` that loads `/gotalk/gotalk.js`, and a gotalk
//! WebSocket endpoint at `/gotalk/` with the operations below. Not a tutorial: see
//! `websocket-minimal` and `websocket-chat` for those.
//!
//! ```text
//! cargo run --example websocket-test-server -- --addr 127.0.0.1:0
//! listening on http://127.0.0.1:41234/
//! ```
//!
//! | op | what it does |
//! |---|---|
//! | `echo` | buffer: returns its input |
//! | `greet` | JSON `{"name"}` → `{"greeting": "Hello NAME"}` |
//! | `fail` | error result `nope` |
//! | `call-back` | buffer: asks the page's `client-op` with the same payload, returns the answer |
//! | `call-back-json` | JSON: asks the page's `client-json`, returns the answer |
//! | `call-stream` | JSON list of strings: sends them as a stream request `client-stream` to the page, returns the parts the page streamed back |
//! | `notify-me` | notifies `ping` `{"n": N}` (N = the input), then returns `"ok"` |
//! | `notes` | the notifications this page sent so far, as `[[name, payload-as-text]]` |
//! | `whoami` | the upgrade request: `{"path", "origin", "host", "userAgent", "peer"}` |
//! | `stream-echo` | stream: echoes every part |
//! | `js-log` | every `/gotalk/gotalk.js` response so far: `[{"status", "ifNoneMatch", "etag", "encoding"}]` |

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use gotalk::ws::axum::{
    self, extract::Request, middleware::Next, response::Html, response::Response, routing::get,
    Router,
};
use gotalk::ws::Endpoint;
use gotalk::{Bytes, Config, HandlerError, Handlers, Limits, Sock};
use serde_json::{json, Value};

const PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>gotalk e2e</title>
<script src="/gotalk/gotalk.js"></script></head>
<body><p>gotalk end-to-end test page</p></body></html>
"#;

type Notes = Mutex<Vec<(String, String)>>;

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_s, _op, p| async move { Ok(p) });
    h.handle("greet", |v: Value| async move {
        let name = v["name"].as_str().unwrap_or("nobody").to_owned();
        Ok(json!({ "greeting": format!("Hello {name}") }))
    });
    h.handle("fail", |_: Value| async move {
        Err::<(), _>(HandlerError::msg("nope"))
    });
    h.handle_buffer("call-back", |sock, _op, p| async move {
        Ok(sock.buffer_request("client-op", p).await?)
    });
    h.handle_with_sock("call-back-json", |sock: Sock, v: Value| async move {
        let answer: Value = sock.request("client-json", &v).await?;
        Ok(answer)
    });
    h.handle_with_sock("call-stream", |sock: Sock, parts: Vec<String>| async move {
        let (mut tx, mut rx) = sock.stream_request("client-stream").await?;
        for p in parts {
            tx.write(p).await?;
        }
        tx.end().await?;
        let mut back = Vec::new();
        while let Some(part) = rx.recv().await? {
            back.push(String::from_utf8_lossy(&part).into_owned());
        }
        Ok(back)
    });
    h.handle_with_sock("notify-me", |sock: Sock, n: Value| async move {
        sock.notify("ping", &json!({ "n": n })).await?;
        Ok("ok")
    });
    h.handle_with_sock("notes", |sock: Sock, _: Value| async move {
        let notes = sock.data::<Notes>().expect("set on open");
        let list = notes.lock().unwrap().clone();
        Ok(list)
    });
    h.handle_with_sock("whoami", |sock: Sock, _: Value| async move {
        let req = sock
            .ws_request()
            .ok_or_else(|| HandlerError::msg("not a WebSocket"))?;
        Ok(json!({
            "path": req.uri().path(),
            "origin": req.origin(),
            "host": req.host(),
            "userAgent": req.header("user-agent"),
            "peer": req.peer_addr().map(|a| a.to_string()),
        }))
    });
    h.handle_stream("stream-echo", |_s, _op, mut input, mut output| async move {
        while let Some(part) = input.recv().await? {
            output.write(part).await?;
        }
        output.end().await?;
        Ok(())
    });
    h.handle_buffer_notification("", |sock: &Sock, name: &str, payload: Bytes| {
        if let Some(notes) = sock.data::<Notes>() {
            notes.lock().unwrap().push((
                name.to_owned(),
                String::from_utf8_lossy(&payload).into_owned(),
            ));
        }
    });
    h
}

/// Records every response for gotalk.js, so the tests can see revalidations (a browser's
/// JavaScript never sees a 304).
async fn log_js(js_log: Arc<Mutex<Vec<Value>>>, req: Request, next: Next) -> Response {
    let is_js = req.uri().path().ends_with("/gotalk.js");
    let inm = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let res = next.run(req).await;
    if is_js {
        let h = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok());
        js_log.lock().unwrap().push(json!({
            "status": res.status().as_u16(),
            "ifNoneMatch": inm,
            "etag": h("etag"),
            "encoding": h("content-encoding"),
            "contentType": h("content-type"),
        }));
    }
    res
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1))
        .map_or("127.0.0.1:0", String::as_str);

    let js_log: Arc<Mutex<Vec<Value>>> = Arc::default();
    let mut h = handlers();
    let log = js_log.clone();
    h.handle("js-log", move |_: Value| {
        let log = log.clone();
        async move { Ok(log.lock().unwrap().clone()) }
    });
    let config = Config::new()
        .handlers(h)
        .limits(Limits::default().stream_requests(16))
        .on_open(|sock| sock.insert_data::<Notes>(Mutex::default()));
    let log = js_log.clone();
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .merge(Endpoint::new(config).router("/gotalk/"))
        .layer(axum::middleware::from_fn(move |req, next| {
            log_js(log.clone(), req, next)
        }));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
