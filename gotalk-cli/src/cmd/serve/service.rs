//! The demo's operations as typed services: `Demo` is what the server offers, `DemoPage` what
//! the page handles. The page uses the module generated from them (`/demo.js`), so its calls
//! are checked against these types; the names and JSON are the ones `gotalk call` uses.

use gotalk::ts_rs::TS;
use gotalk::{HandlerError, Sock};
use serde::{Deserialize, Serialize};

/// Input of `greet`.
#[derive(Serialize, Deserialize, TS)]
#[ts(crate = "gotalk::ts_rs")]
pub struct GreetIn {
    pub name: String,
}

/// Result of `greet`.
#[derive(Serialize, Deserialize, TS)]
#[ts(crate = "gotalk::ts_rs")]
pub struct GreetOut {
    pub greeting: String,
}

/// Input of `chat/send`.
#[derive(Serialize, Deserialize, TS)]
#[ts(crate = "gotalk::ts_rs")]
pub struct ChatIn {
    /// Who says it ("anonymous" when empty).
    #[serde(default)]
    pub name: String,
    pub text: String,
}

/// Payload of `chat/typing`, both ways.
#[derive(Serialize, Deserialize, TS)]
#[ts(crate = "gotalk::ts_rs")]
pub struct Typing {
    #[serde(default)]
    pub name: String,
}

/// One chat message, as `chat/msg` carries it and `chat/history` lists it (the chat encodes
/// it from its own borrowed copy of these fields, see `chat.rs`).
#[derive(Serialize, Deserialize, TS, Debug, PartialEq)]
#[ts(crate = "gotalk::ts_rs")]
pub struct ChatMsg {
    /// Increases by one per message of the process that posted it, from 1 when it starts.
    pub id: u64,
    /// The process that posted it (16 hex digits): with `--redis`, several share one chat.
    pub node: String,
    pub name: String,
    pub text: String,
    /// RFC 3339, UTC.
    pub time: String,
}

/// What the demo server offers (besides `echo` and `stream-echo`, which take raw bytes).
#[gotalk::service(typescript)]
pub trait Demo {
    /// Greets by name.
    async fn greet(&self, input: GreetIn) -> GreetOut;
    /// Says something in the chat; answers "ok".
    #[gotalk(name = "chat/send")]
    async fn chat_send(&self, input: ChatIn) -> Result<String, HandlerError>;
    /// The last messages, oldest first.
    #[gotalk(name = "chat/history")]
    async fn chat_history(&self) -> Result<Vec<ChatMsg>, HandlerError>;
    /// Tells the other chat members that `name` is typing.
    #[gotalk(name = "chat/typing")]
    fn chat_typing(&self, sock: &Sock, input: Typing);
}

/// What the demo page handles.
#[gotalk::service(typescript)]
pub trait DemoPage {
    /// A chat message.
    #[gotalk(name = "chat/msg")]
    fn chat_msg(&self, msg: ChatMsg);
    /// Someone is typing.
    #[gotalk(name = "chat/typing")]
    fn chat_typing(&self, typing: Typing);
}

/// The page's module, as JavaScript (served as `/demo.js`).
pub fn page_module() -> String {
    gotalk::typescript::Module::new()
        .service::<DemoService>()
        .service::<DemoPageService>()
        .javascript()
}
