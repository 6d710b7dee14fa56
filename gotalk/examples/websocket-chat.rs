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
//!
//! The table is two typed services (`#[gotalk::service]`): the server's `ChatRoom` and the page's
//! `ChatPage` below. The page calls and implements them through the module generated from them
//! (served as `/chat.js`); the server calls the page through `ChatPageClient`, except for the
//! broadcasts, which it encodes once for every member.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gotalk::rooms::{Hub, HubBuilder};
use gotalk::ts_rs::TS;
use gotalk::ws::axum::http::header;
use gotalk::ws::axum::{response::Html, routing::get, Router};
use gotalk::ws::{Endpoint, OriginPolicy};
use gotalk::{Config, HandlerError, Handlers, Notification, Sock};
use serde::{Deserialize, Serialize};

const HISTORY: usize = 100;
/// The hub's room every page is in.
const ROOM: &str = "chat";
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize, Deserialize, TS, Clone, Debug, PartialEq)]
#[ts(crate = "gotalk::ts_rs")]
struct Line {
    from: String,
    text: String,
}

#[derive(Serialize, Deserialize, TS, Debug)]
#[ts(crate = "gotalk::ts_rs")]
struct SendIn {
    text: String,
}

#[derive(Serialize, Deserialize, TS, Debug, Default)]
#[ts(crate = "gotalk::ts_rs")]
struct Status {
    typing: bool,
}

#[derive(Serialize, Deserialize, TS, Debug, PartialEq)]
#[ts(crate = "gotalk::ts_rs")]
struct WhoEntry {
    name: String,
    typing: bool,
}

#[derive(Serialize, Deserialize, TS, Debug)]
#[ts(crate = "gotalk::ts_rs")]
struct Welcome {
    name: String,
    history: Vec<Line>,
}

/// What the server offers each page.
#[gotalk::service(typescript, rename_all = "kebab-case")]
trait ChatRoom {
    /// Says something to everyone in the room.
    async fn send(&self, sock: &Sock, input: SendIn) -> Result<(), HandlerError>;
    /// Asks every page, all at once, whether its user is typing.
    async fn who(&self) -> Vec<WhoEntry>;
}

/// What each page offers the server.
#[gotalk::service(typescript, rename_all = "kebab-case")]
trait ChatPage {
    /// The name the page's user wants.
    async fn get_name(&self) -> String;
    /// Whether the page's user is typing.
    async fn status(&self) -> Status;
    /// Sent once, after joining: the name given, and what was said before.
    fn welcome(&self, welcome: Welcome);
    /// Someone said something (broadcast).
    fn message(&self, line: Line);
    /// Who is here now (broadcast).
    fn members(&self, names: Vec<String>);
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
        // ChatPage's `members`, encoded once for everyone on this process.
        let n = Notification::json("members", &names).expect("serializable");
        let _ = self.hub.to(ROOM).local().send(&n);
    }

    /// A new page: ask it for its name, then let everyone know.
    async fn join(&self, sock: Sock) {
        let page = ChatPageClient::new(&sock);
        let asked = tokio::time::timeout(ASK_TIMEOUT, page.get_name());
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
        let welcome = Welcome {
            name: name.clone(),
            history,
        };
        let _ = page.welcome(welcome).await;
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
        // ChatPage's `message`, encoded once for everyone.
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
            let page = ChatPageClient::new(&sock);
            let status = tokio::time::timeout(ASK_TIMEOUT, page.status())
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

impl ChatRoom for Chat {
    async fn send(&self, sock: &Sock, input: SendIn) -> Result<(), HandlerError> {
        let text = input.text.trim();
        if text.is_empty() {
            return Err(HandlerError::msg("empty message"));
        }
        let from = self
            .name_of(sock)
            .ok_or_else(|| HandlerError::msg("not joined yet"))?;
        self.say(&from, &text.chars().take(2000).collect::<String>());
        Ok(())
    }

    async fn who(&self) -> Vec<WhoEntry> {
        Chat::who(self).await
    }
}

/// The page's module: the server's ChatRoom to call, and its own ChatPage to implement.
fn page_module() -> String {
    gotalk::typescript::Module::new()
        .service::<ChatRoomService>()
        .service::<ChatPageService>()
        .javascript()
}

fn config(chat: &Chat) -> Config {
    let mut handlers = Handlers::new();
    handlers.service(ChatRoomServer::new(chat.clone()));
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
    let module: &'static str = Box::leak(page_module().into_boxed_str());
    let js = move || async move { ([(header::CONTENT_TYPE, "text/javascript")], module) };
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/chat.js", get(js))
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

type Seen = tokio::sync::mpsc::UnboundedReceiver<(String, serde_json::Value)>;

/// A Rust client playing a page: implements `ChatPage`, passes on what it is told.
struct FakePage {
    name: &'static str,
    typing: bool,
    seen: tokio::sync::mpsc::UnboundedSender<(String, serde_json::Value)>,
}

impl FakePage {
    fn saw(&self, what: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or_default();
        let _ = self.seen.send((what.to_owned(), v));
    }
}

impl ChatPage for FakePage {
    async fn get_name(&self) -> String {
        self.name.to_owned()
    }

    async fn status(&self) -> Status {
        Status {
            typing: self.typing,
        }
    }

    fn welcome(&self, welcome: Welcome) {
        self.saw("welcome", welcome);
    }

    fn message(&self, line: Line) {
        self.saw("message", line);
    }

    fn members(&self, names: Vec<String>) {
        self.saw("members", names);
    }
}

async fn fake_page(url: &str, name: &'static str, typing: bool) -> gotalk::Result<(Sock, Seen)> {
    let (seen, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut h = Handlers::new();
    h.service(ChatPageServer::new(FakePage { name, typing, seen }));
    let sock = gotalk::connect_with(url, &Config::new().handlers(h)).await?;
    Ok((sock, rx))
}

/// Waits for notification `name` whose value satisfies `want`.
async fn wait_for(
    rx: &mut Seen,
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

    ChatRoomClient::new(&alice)
        .send(SendIn {
            text: "hi bob".into(),
        })
        .await?;
    let line = wait_for(&mut bob_rx, "message", |v| v["from"] == "alice").await?;
    println!("bob got: {line}");
    assert_eq!(line["text"], "hi bob");

    let mut who = ChatRoomClient::new(&bob).who().await?;
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
<script type="module">
  // chat.js is generated from the Rust services ChatRoom and ChatPage (#[gotalk::service]).
  import { chatRoomClient, handleChatPage } from '/chat.js';
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

  // What the server asks and tells us: the ChatPage service.
  handleChatPage(gotalk, {
    getName: () => myName,
    status: () => ({ typing: $('text').value.trim() !== '' }),
    welcome(w) {
      myName = w.name;
      $('me').textContent = w.name;
      $('log').replaceChildren();
      w.history.forEach(show);
    },
    message: show,
    members: (names) => list($('members'), names),
  });

  const sock = gotalk.connection()
    .on('open', () => { $('status').textContent = 'connected'; })
    .on('close', (err) => { $('status').textContent = 'reconnecting…'; });
  const room = chatRoomClient(sock);

  $('form').onsubmit = async (ev) => {
    ev.preventDefault();
    const text = $('text').value;
    if (!text.trim()) return;
    try {
      await room.send({ text });
      $('text').value = '';
    } catch (err) {
      show({ from: 'server', text: 'not sent: ' + err.message });
    }
  };
  $('who').onclick = async () => {
    const who = await room.who();
    list($('typing'), who.map((w) => w.name + (w.typing ? ' is typing…' : ' is idle')));
  };
</script>
</body>
</html>
"#;
