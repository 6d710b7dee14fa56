//! A chat room in the browser. Open the page in several tabs: each tab joins under a name,
//! messages are broadcast by the server as notifications, and the server asks the pages
//! things through requests of its own — each page's name when it connects, and, when someone
//! clicks "Who is typing?", every page's typing status.
//!
//! The room is a [`gotalk::rooms::Hub`] room. With `--redis`, several processes share it
//! through Redis (feature `redis`): pages on one process see messages from pages on the
//! others, and each process keeps the history of all of them. The member list and "who is
//! typing" are each process's own pages.
//!
//! ```text
//! cargo run --example websocket-chat               # then open the URL it prints, in 2+ tabs
//! cargo run --example websocket-chat -- --addr 127.0.0.1:8080
//! cargo run --example websocket-chat -- --check    # self-test with two Rust clients, then exit
//! # two processes, one chat (needs a Redis):
//! cargo run --example websocket-chat --features redis -- --addr 127.0.0.1:8081 --redis redis://127.0.0.1:6379
//! cargo run --example websocket-chat --features redis -- --addr 127.0.0.1:8082 --redis redis://127.0.0.1:6379
//! ```
//!
//! | direction | kind | name | payload |
//! |---|---|---|---|
//! | server → page | request | `get-name` | → `"alice"` |
//! | server → page | request | `status` | → `{"typing": true}` |
//! | server → page | notification | `welcome` | `{"name", "history": [line]}` |
//! | server → page | notification | `message` | line = `{"from", "text"}` |
//! | server → page | notification | `members` | `["alice", "bob"]` |
//! | page → server | request | `send` | `{"text"}` → `null` |
//! | page → server | request | `who` | → `[{"name", "typing"}]` |

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gotalk::rooms::{Hub, HubBuilder};
use gotalk::ws::axum::{response::Html, routing::get, Router};
use gotalk::ws::{Endpoint, OriginPolicy};
use gotalk::{Config, HandlerError, Handlers, Notification, Sock};
use serde::{Deserialize, Serialize};

const HISTORY: usize = 100;
/// The hub's room every page is in.
const ROOM: &str = "chat";
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Line {
    from: String,
    text: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct SendIn {
    text: String,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct Status {
    typing: bool,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct WhoEntry {
    name: String,
    typing: bool,
}

struct Member {
    sock: Sock,
    name: String,
}

#[derive(Default)]
struct Room {
    members: Vec<Member>,
    history: VecDeque<Line>,
}

#[derive(Clone)]
struct Chat {
    room: Arc<Mutex<Room>>,
    hub: Hub,
    guests: Arc<AtomicU32>,
}

fn lock(room: &Mutex<Room>) -> std::sync::MutexGuard<'_, Room> {
    room.lock().unwrap_or_else(|e| e.into_inner())
}

fn remember(room: &Mutex<Room>, line: Line) {
    let mut room = lock(room);
    if room.history.len() == HISTORY {
        room.history.pop_front();
    }
    room.history.push_back(line);
}

impl Chat {
    /// A chat whose hub is built by `hub` (with an adapter, to span processes).
    fn new(hub: HubBuilder) -> gotalk::Result<Chat> {
        let room = Arc::new(Mutex::new(Room::default()));
        let r = room.clone();
        // Lines said on other processes go into this one's history too.
        let hub = hub
            .on_remote(move |_, n| {
                if n.name() == "message" {
                    if let Ok(line) = serde_json::from_slice::<Line>(n.payload()) {
                        remember(&r, line);
                    }
                }
            })
            .build()?;
        Ok(Chat {
            room,
            hub,
            guests: Arc::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Room> {
        lock(&self.room)
    }

    fn name_of(&self, sock: &Sock) -> Option<String> {
        self.lock()
            .members
            .iter()
            .find(|m| m.sock.same_as(sock))
            .map(|m| m.name.clone())
    }

    /// Sends notification `name` to every page, on every process: encoded once, queued on
    /// each page's connection without waiting. A page that does not read misses what does not
    /// fit in its write queue rather than holding up everyone (the hub's default policy); the
    /// write timeout closes it in the end.
    fn broadcast<T: Serialize>(&self, name: &str, value: &T) {
        let _ = self
            .hub
            .to(ROOM)
            .send(&Notification::json(name, value).expect("serializable"));
    }

    /// This process's pages, to this process's pages.
    fn broadcast_members(&self) {
        let names: Vec<String> = self.lock().members.iter().map(|m| m.name.clone()).collect();
        let n = Notification::json("members", &names).expect("serializable");
        let _ = self.hub.to(ROOM).local().send(&n);
    }

    /// A new page: ask it for its name, then let everyone know.
    async fn join(&self, sock: Sock) {
        let asked = tokio::time::timeout(ASK_TIMEOUT, sock.request::<_, String>("get-name", &()));
        let wanted = match asked.await {
            Ok(Ok(name)) => clean_name(&name),
            _ => String::new(),
        };
        let name = {
            let mut room = self.lock();
            let mut name = if wanted.is_empty() {
                format!("guest-{}", self.guests.fetch_add(1, Ordering::Relaxed) + 1)
            } else {
                wanted
            };
            let base = name.clone();
            let mut n = 1;
            while room.members.iter().any(|m| m.name == name) {
                n += 1;
                name = format!("{base} ({n})");
            }
            // Fails if the page has gone meanwhile (its on_close has run, or never will).
            if self.hub.join(&sock, ROOM).is_err() {
                return;
            }
            room.members.push(Member {
                sock: sock.clone(),
                name: name.clone(),
            });
            name
        };
        let history: Vec<Line> = self.lock().history.iter().cloned().collect();
        let _ = sock
            .notify(
                "welcome",
                &serde_json::json!({ "name": name, "history": history }),
            )
            .await;
        self.say("server", &format!("{name} joined"));
        self.broadcast_members();
    }

    fn leave(&self, sock: &Sock) {
        let gone = {
            let mut room = self.lock();
            let i = room.members.iter().position(|m| m.sock.same_as(sock));
            i.map(|i| room.members.remove(i).name)
        };
        if let Some(name) = gone {
            self.say("server", &format!("{name} left"));
            self.broadcast_members();
        }
    }

    fn say(&self, from: &str, text: &str) {
        let line = Line {
            from: from.to_owned(),
            text: text.to_owned(),
        };
        remember(&self.room, line.clone());
        self.broadcast("message", &line);
    }

    /// Asks every page, all at once, whether its user is typing.
    async fn who(&self) -> Vec<WhoEntry> {
        let members: Vec<(Sock, String)> = self
            .lock()
            .members
            .iter()
            .map(|m| (m.sock.clone(), m.name.clone()))
            .collect();
        let asks = members.into_iter().map(|(sock, name)| async move {
            let status =
                tokio::time::timeout(ASK_TIMEOUT, sock.request::<_, Status>("status", &()))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
            WhoEntry {
                name,
                typing: status.typing,
            }
        });
        futures_util::future::join_all(asks).await
    }
}

fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(32)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn config(chat: &Chat) -> Config {
    let mut handlers = Handlers::new();
    let c = chat.clone();
    handlers.handle_with_sock("send", move |sock: Sock, input: SendIn| {
        let c = c.clone();
        async move {
            let text = input.text.trim();
            if text.is_empty() {
                return Err(HandlerError::msg("empty message"));
            }
            let from = c
                .name_of(&sock)
                .ok_or_else(|| HandlerError::msg("not joined yet"))?;
            c.say(&from, &text.chars().take(2000).collect::<String>());
            Ok(())
        }
    });
    let c = chat.clone();
    handlers.handle("who", move |_: ()| {
        let c = c.clone();
        async move { Ok(c.who().await) }
    });
    let on_open = chat.clone();
    let on_close = chat.clone();
    Config::new()
        .handlers(handlers)
        .on_open(move |sock| {
            let (chat, sock) = (on_open.clone(), sock.clone());
            tokio::spawn(async move { chat.join(sock).await });
        })
        .on_close(move |sock, _reason| on_close.leave(sock))
}

fn app(chat: &Chat) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        // Only this server's own pages (and programs) may connect: any other site's page
        // could otherwise join the chat with its visitors' browsers.
        .merge(
            Endpoint::new(config(chat))
                .origin(OriginPolicy::SameHost)
                .router("/gotalk/"),
        )
}

async fn serve(
    addr: &str,
    hub: HubBuilder,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = app(&Chat::new(hub)?);
    let task = tokio::spawn(async move {
        if let Err(e) = gotalk::ws::serve(listener, app).await {
            eprintln!("server failed: {e}");
        }
    });
    Ok((local, task))
}

// ---- self-test -------------------------------------------------------------------------

/// A Rust client playing a page: answers `get-name` and `status`, collects notifications.
async fn fake_page(
    url: &str,
    name: &'static str,
    typing: bool,
) -> gotalk::Result<(
    Sock,
    tokio::sync::mpsc::UnboundedReceiver<(String, serde_json::Value)>,
)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut h = Handlers::new();
    h.handle("get-name", move |_: ()| async move { Ok(name) });
    h.handle("status", move |_: ()| async move { Ok(Status { typing }) });
    h.handle_buffer_notification("", move |_s, n, payload| {
        let v = serde_json::from_slice(&payload).unwrap_or_default();
        let _ = tx.send((n.to_owned(), v));
    });
    let sock = gotalk::connect_with(url, &Config::new().handlers(h)).await?;
    Ok((sock, rx))
}

/// Waits for notification `name` whose value satisfies `want`.
async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, serde_json::Value)>,
    name: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((n, v))) if n == name && want(&v) => return Ok(v),
            Ok(Some(_)) => {}
            _ => return Err(format!("no {name:?} notification arrived")),
        }
    }
}

async fn check() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, task) = serve("127.0.0.1:0", Hub::builder()).await?;
    let url = format!("ws://{addr}/gotalk/");
    let (alice, mut alice_rx) = fake_page(&url, "alice", true).await?;
    wait_for(&mut alice_rx, "welcome", |v| v["name"] == "alice").await?;
    let (bob, mut bob_rx) = fake_page(&url, "bob", false).await?;
    wait_for(&mut bob_rx, "welcome", |v| v["name"] == "bob").await?;
    wait_for(&mut alice_rx, "members", |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
    })
    .await?;

    alice
        .request::<_, ()>(
            "send",
            &SendIn {
                text: "hi bob".into(),
            },
        )
        .await?;
    let line = wait_for(&mut bob_rx, "message", |v| v["from"] == "alice").await?;
    println!("bob got: {line}");
    assert_eq!(line["text"], "hi bob");

    let mut who: Vec<WhoEntry> = bob.request("who", &()).await?;
    who.sort_by(|a, b| a.name.cmp(&b.name));
    println!("who: {who:?}");
    assert_eq!(
        who,
        [
            WhoEntry {
                name: "alice".into(),
                typing: true
            },
            WhoEntry {
                name: "bob".into(),
                typing: false
            },
        ]
    );

    bob.close();
    wait_for(&mut alice_rx, "message", |v| v["text"] == "bob left").await?;
    alice.close();
    task.abort();
    println!("check ok");
    Ok(())
}

#[cfg(feature = "redis")]
fn with_redis(url: &str) -> gotalk::Result<HubBuilder> {
    println!("sharing the chat with other processes through {url}");
    Ok(Hub::builder().adapter(gotalk::rooms::RedisAdapter::new(url)?))
}

#[cfg(not(feature = "redis"))]
fn with_redis(_url: &str) -> Result<HubBuilder, Box<dyn std::error::Error>> {
    Err("--redis needs the example built with --features redis".into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--check") {
        return check().await;
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let addr = value("--addr").unwrap_or("127.0.0.1:1236");
    let hub = match value("--redis") {
        None => Hub::builder(),
        Some(url) => with_redis(url)?,
    };
    let (local, task) = serve(addr, hub).await?;
    println!("open http://{local}/ in two or more browser tabs (Ctrl-C to stop)");
    task.await?;
    Ok(())
}

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gotalk chat</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; display: grid; height: 100vh;
         grid-template: "head head" auto "log side" 1fr "form side" auto / 1fr 14em; }
  header { grid-area: head; padding: .6em 1em; background: #223; color: #fff; }
  #log { grid-area: log; overflow-y: auto; padding: 1em; }
  #log .from { font-weight: 600; margin-right: .5em; }
  #log .server { color: #777; font-style: italic; }
  aside { grid-area: side; border-left: 1px solid #ddd; padding: 1em; }
  form { grid-area: form; display: flex; gap: .5em; padding: .6em 1em; border-top: 1px solid #ddd; }
  #text { flex: 1; font: inherit; padding: .3em; }
</style>
<script src="/gotalk/gotalk.js"></script>
</head>
<body>
<header>gotalk chat — you are <b id="me">…</b> · <span id="status">connecting…</span></header>
<div id="log"></div>
<aside>
  <h3>Here</h3><ul id="members"></ul>
  <button id="who" type="button">Who is typing?</button>
  <ul id="typing"></ul>
</aside>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something"><button id="send">Send</button></form>
<script>
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  let myName = params.get('name') || sessionStorage.getItem('chat-name') ||
               ('guest-' + Math.floor(Math.random() * 1000));
  sessionStorage.setItem('chat-name', myName);

  function show(line) {
    const div = document.createElement('div');
    if (line.from === 'server') {
      div.className = 'server';
      div.textContent = line.text;
    } else {
      const from = document.createElement('span');
      from.className = 'from';
      from.textContent = line.from;
      div.append(from, document.createTextNode(line.text));
    }
    $('log').append(div);
    $('log').scrollTop = $('log').scrollHeight;
  }
  function list(el, items) {
    el.replaceChildren(...items.map((text) => {
      const li = document.createElement('li');
      li.textContent = text;
      return li;
    }));
  }

  // The server asks us things.
  gotalk.handle('get-name', async () => myName);
  gotalk.handle('status', async () => ({ typing: $('text').value.trim() !== '' }));
  // The server tells us things.
  gotalk.handleNotification('welcome', (w) => {
    myName = w.name;
    $('me').textContent = w.name;
    $('log').replaceChildren();
    w.history.forEach(show);
  });
  gotalk.handleNotification('message', show);
  gotalk.handleNotification('members', (names) => list($('members'), names));

  const sock = gotalk.connection()
    .on('open', () => { $('status').textContent = 'connected'; })
    .on('close', (err) => { $('status').textContent = 'reconnecting…'; });

  $('form').onsubmit = async (ev) => {
    ev.preventDefault();
    const text = $('text').value;
    if (!text.trim()) return;
    try {
      await sock.request('send', { text });
      $('text').value = '';
    } catch (err) {
      show({ from: 'server', text: 'not sent: ' + err.message });
    }
  };
  $('who').onclick = async () => {
    const who = await sock.request('who');
    list($('typing'), who.map((w) => w.name + (w.typing ? ' is typing…' : ' is idle')));
  };
</script>
</body>
</html>
"#;
