//! `gotalk serve`: the demo server. A web page with a chat and an echo/greet console
//! (WebSocket, served with `gotalk.js`), and the same operations over TCP.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clap::Args;
use gotalk::ws::axum::{response::Html, routing::get, Router};
use gotalk::ws::Endpoint;
use gotalk::{Config, HandlerError, Handlers, Limits, Server, Sock};
use gotalk_cli::util::rfc3339;
use serde::{Deserialize, Serialize};

use super::{err_line, fail, interrupted, out_line, CmdResult};

/// Arguments of `gotalk serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where the web page and the WebSocket endpoint (/gotalk/) are served
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:1235")]
    pub http: String,
    /// Where gotalk over TCP is served ("off" to disable)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:1234")]
    pub tcp: String,
}

#[derive(Deserialize)]
struct GreetIn {
    name: String,
}

#[derive(Serialize)]
struct GreetOut {
    greeting: String,
}

#[derive(Deserialize)]
struct ChatIn {
    #[serde(default)]
    name: String,
    text: String,
}

#[derive(Serialize, Clone)]
struct ChatMsg {
    name: String,
    text: String,
    time: String,
}

const HISTORY: usize = 100;
const MAX_TEXT: usize = 2000;

#[derive(Default)]
struct Chat {
    socks: Mutex<Vec<Sock>>,
    history: Mutex<Vec<ChatMsg>>,
}

impl Chat {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn post(&self, msg: ChatMsg) {
        {
            let mut h = Chat::lock(&self.history);
            h.push(msg.clone());
            let excess = h.len().saturating_sub(HISTORY);
            h.drain(..excess);
        }
        let Ok(payload) = serde_json::to_vec(&msg) else {
            return;
        };
        let payload = Bytes::from(payload);
        for sock in Chat::lock(&self.socks).iter() {
            let (sock, payload) = (sock.clone(), payload.clone());
            // One task per recipient: a slow reader must not hold up the others.
            tokio::spawn(async move {
                let _ = sock.buffer_notify("chat/msg", payload).await;
            });
        }
    }
}

fn handlers(chat: Arc<Chat>) -> Handlers {
    let mut h = Handlers::new();
    h.handle_buffer("echo", |_sock, _op, payload| async move { Ok(payload) });
    h.handle("greet", |input: GreetIn| async move {
        Ok(GreetOut {
            greeting: format!("Hello {}", input.name),
        })
    });
    h.handle_stream(
        "stream-echo",
        |_sock, _op, mut input, mut output| async move {
            while let Some(part) = input.recv().await? {
                output.write(part).await?;
            }
            Ok(())
        },
    );
    let c = chat.clone();
    h.handle("chat/send", move |input: ChatIn| {
        let c = c.clone();
        async move {
            let text = input.text.trim();
            if text.is_empty() {
                return Err(HandlerError::msg("empty message"));
            }
            let mut name = input.name.trim().to_owned();
            if name.is_empty() {
                name = "anonymous".into();
            }
            c.post(ChatMsg {
                name: name.chars().take(40).collect(),
                text: text.chars().take(MAX_TEXT).collect(),
                time: rfc3339(SystemTime::now()),
            });
            Ok("ok")
        }
    });
    // Any payload (or none) asks for the history.
    h.handle_buffer("chat/history", move |_sock, _op, _payload| {
        let c = chat.clone();
        async move {
            let history = Chat::lock(&c.history).clone();
            Ok(Bytes::from(serde_json::to_vec(&history)?))
        }
    });
    h
}

fn config(chat: Arc<Chat>) -> Config {
    let on_open = chat.clone();
    let on_close = chat.clone();
    Config::new()
        .handlers(handlers(chat))
        .limits(Limits::default().stream_requests(64))
        .on_open(move |sock| Chat::lock(&on_open.socks).push(sock.clone()))
        .on_close(move |sock, _| Chat::lock(&on_close.socks).retain(|s| !s.same_as(sock)))
}

pub async fn run(a: ServeArgs) -> CmdResult {
    let chat = Arc::new(Chat::default());
    let config = config(chat);
    let tcp = if a.tcp == "off" {
        None
    } else {
        Some(
            Server::bind(&a.tcp, config.clone())
                .await
                .map_err(|e| fail(format!("cannot listen on {}: {e}", a.tcp)))?,
        )
    };
    // The page's hint names the TCP address actually served.
    let page = match &tcp {
        Some(s) => PAGE.replace(
            "127.0.0.1:1234",
            s.local_addr().to_string().trim_start_matches("tcp://"),
        ),
        None => PAGE.to_owned(),
    };
    let app = Router::new()
        .route("/", get(move || async move { Html(page) }))
        .merge(Endpoint::new(config).router("/gotalk/"));
    let listener = tokio::net::TcpListener::bind(&a.http)
        .await
        .map_err(|e| fail(format!("cannot listen on {}: {e}", a.http)))?;
    let http = listener
        .local_addr()
        .map_err(|e| fail(format!("cannot listen on {}: {e}", a.http)))?;
    let web = tokio::spawn(async move {
        if let Err(e) = gotalk::ws::serve(listener, app).await {
            err_line(&format!("web server failed: {e}"));
        }
    });
    out_line("gotalk demo server");
    out_line(&format!(
        "  web page   http://{http}/   (chat, and an echo/greet console)"
    ));
    out_line(&format!("  WebSocket  ws://{http}/gotalk/"));
    if let Some(s) = &tcp {
        let at = s.local_addr().to_string();
        let hp = at.trim_start_matches("tcp://");
        out_line(&format!("  TCP        {at}"));
        out_line(&format!(
            "try: gotalk call {hp} greet '{{\"name\":\"you\"}}'\n     gotalk call {hp} chat/send '{{\"name\":\"cli\",\"text\":\"hi from the shell\"}}'"
        ));
    }
    out_line(
        "operations: echo, greet, stream-echo, chat/send, chat/history; notification chat/msg",
    );
    out_line("Ctrl-C to stop");
    interrupted().await;
    if let Some(s) = tcp {
        s.shutdown(Duration::from_secs(1)).await;
    }
    web.abort();
    Ok(ExitCode::SUCCESS)
}

const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gotalk demo</title>
<style>
  :root { --fg: #1d2330; --muted: #6b7385; --line: #dde1e8; --accent: #2f6fde; }
  * { box-sizing: border-box; }
  body { font: 15px/1.45 system-ui, -apple-system, sans-serif; color: var(--fg); margin: 0;
         background: #f6f7f9; }
  header { padding: 14px 24px; background: #fff; border-bottom: 1px solid var(--line);
           display: flex; align-items: baseline; gap: 16px; }
  header h1 { font-size: 18px; margin: 0; }
  #status { color: var(--muted); }
  #status.ok { color: #1a8a3a; }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; padding: 20px 24px;
         max-width: 1100px; margin: 0 auto; }
  @media (max-width: 800px) { main { grid-template-columns: 1fr; } }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px;
            display: flex; flex-direction: column; min-height: 420px; }
  h2 { font-size: 15px; margin: 0 0 10px; }
  .log { flex: 1; overflow-y: auto; border: 1px solid var(--line); border-radius: 6px;
         padding: 8px 10px; background: #fbfcfd; height: 300px; font-size: 14px; }
  .msg { margin: 2px 0; } .msg b { color: var(--accent); } .msg time { color: var(--muted);
         font-size: 12px; margin-right: 6px; }
  pre { margin: 4px 0; white-space: pre-wrap; word-break: break-word; font-size: 13px; }
  .err { color: #c62828; }
  form { display: flex; gap: 8px; margin-top: 10px; }
  input, select { font: inherit; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; }
  input.grow { flex: 1; min-width: 0; }
  button { font: inherit; padding: 6px 14px; border: 0; border-radius: 6px; background: var(--accent);
           color: #fff; cursor: pointer; }
  p.hint { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
  code { background: #eef0f4; padding: 1px 4px; border-radius: 4px; }
</style>
<script src="/gotalk/gotalk.js"></script>
</head>
<body>
<header><h1>gotalk demo</h1><span id="status">connecting…</span></header>
<main>
  <section>
    <h2>Chat</h2>
    <div id="chat" class="log"></div>
    <form id="chat-form">
      <input id="name" placeholder="name" size="10">
      <input id="text" class="grow" placeholder="say something" autocomplete="off" autofocus>
      <button>Send</button>
    </form>
    <p class="hint">Everyone on this page, and anyone running
      <code>gotalk call 127.0.0.1:1234 chat/send '{"name":"cli","text":"hi"}'</code>, is in this room.</p>
  </section>
  <section>
    <h2>Console</h2>
    <div id="console" class="log"></div>
    <form id="console-form">
      <select id="op"><option>greet</option><option>echo</option><option>chat/history</option></select>
      <input id="payload" class="grow" value='{"name":"World"}' autocomplete="off">
      <button>Call</button>
    </form>
    <p class="hint">The payload is sent as JSON; the result (or the error) appears above.</p>
  </section>
</main>
<script>
  const $ = (id) => document.getElementById(id);
  const add = (box, node) => { box.appendChild(node); box.scrollTop = box.scrollHeight; };
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
                                   if (text !== undefined) e.textContent = text; return e; };
  function showChat(m) {
    const line = el('div', 'msg');
    line.appendChild(el('time', '', (m.time || '').slice(11, 19)));
    line.appendChild(el('b', '', m.name + ': '));
    line.appendChild(document.createTextNode(m.text));
    add($('chat'), line);
  }
  gotalk.handleNotification('chat/msg', (m) => showChat(m));
  $('name').value = localStorage.getItem('gotalk-name') || 'guest' + Math.floor(Math.random() * 1000);
  const sock = gotalk.connection()
    .on('open', async () => {
      $('status').textContent = 'connected'; $('status').className = 'ok';
      $('chat').textContent = '';
      try { (await sock.request('chat/history')).forEach(showChat); } catch (e) {}
    })
    .on('close', (err) => {
      $('status').textContent = 'disconnected' + (err ? ': ' + err.message : '') + ' (reconnecting)';
      $('status').className = '';
    });
  $('chat-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const text = $('text').value; if (!text.trim()) return;
    localStorage.setItem('gotalk-name', $('name').value);
    $('text').value = '';
    try { await sock.request('chat/send', {name: $('name').value, text}); }
    catch (err) { add($('chat'), el('div', 'err', 'error: ' + err.message)); }
  };
  $('op').onchange = () => {
    $('payload').value = {greet: '{"name":"World"}', echo: '"Hello"', 'chat/history': 'null'}[$('op').value];
  };
  $('console-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const op = $('op').value, text = $('payload').value;
    let value;
    try { value = JSON.parse(text); }
    catch (err) { add($('console'), el('pre', 'err', 'not JSON: ' + err.message)); return; }
    add($('console'), el('pre', '', '→ ' + op + ' ' + text));
    try { add($('console'), el('pre', '', '← ' + JSON.stringify(await sock.request(op, value), null, 2))); }
    catch (err) { add($('console'), el('pre', 'err', '← error: ' + err.message)); }
  };
</script>
</body>
</html>
"##;
