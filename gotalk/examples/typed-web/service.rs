//! The two services of the typed-web example, defined once for the Rust server, the page's
//! TypeScript module (`service.ts`, checked in and kept current by `tests/typescript.rs`) and
//! the JavaScript the server hands the page (`/service.js`).

use gotalk::service::Parts;
use gotalk::ts_rs::TS;
use gotalk::Sock;
use serde::{Deserialize, Serialize};

/// A note on the board.
#[derive(Serialize, Deserialize, TS, Clone, Debug, PartialEq)]
#[ts(crate = "gotalk::ts_rs")]
pub struct Note {
    /// Given by the server, from 1.
    pub id: u64,
    /// What it says.
    pub text: String,
}

/// A note to post.
#[derive(Serialize, Deserialize, TS, Clone, Debug)]
#[ts(crate = "gotalk::ts_rs")]
pub struct NewNote {
    /// What it says: 1 to 200 characters.
    pub text: String,
}

/// Why a note was not posted: travels as JSON, typed on both ends.
#[derive(Serialize, Deserialize, TS, Clone, Debug, PartialEq)]
#[ts(crate = "gotalk::ts_rs")]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PostError {
    /// The text is empty.
    Empty,
    /// The text is longer than `max` characters.
    TooLong {
        /// The limit.
        max: u32,
    },
    /// The page's user said no when asked.
    NotConfirmed,
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Empty => f.write_str("the note is empty"),
            PostError::TooLong { max } => write!(f, "the note is longer than {max} characters"),
            PostError::NotConfirmed => f.write_str("not confirmed"),
        }
    }
}

/// A question the server asks the page.
#[derive(Serialize, Deserialize, TS, Clone, Debug)]
#[ts(crate = "gotalk::ts_rs")]
pub struct Question {
    /// The question, for a person.
    pub text: String,
}

/// What a page's self-test found (`?check`).
#[derive(Serialize, Deserialize, TS, Clone, Debug)]
#[ts(crate = "gotalk::ts_rs")]
pub struct CheckReport {
    /// Whether every step passed.
    pub ok: bool,
    /// One line per step.
    pub lines: Vec<String>,
}

/// What the server offers the page: a board of notes.
#[gotalk::service(typescript, rename_all = "kebab-case")]
pub trait Board {
    /// Every note, oldest first.
    async fn list(&self) -> Vec<Note>;
    /// Posts a note, once the page that sends it confirms (the server asks it).
    async fn post(&self, sock: &Sock, note: NewNote) -> Result<Note, PostError>;
    /// The notes whose text contains `query`, one part each.
    async fn search(&self, query: String) -> Parts<Note>;
    /// Every line sent, shouted back as it arrives.
    async fn shout(&self, lines: Parts<String>) -> Parts<String>;
    /// The outcome of a page's self-test.
    fn report(&self, sock: &Sock, report: CheckReport);
}

/// What the page offers the server.
#[gotalk::service(typescript, rename_all = "kebab-case")]
pub trait Page {
    /// Asks the page's user a yes/no question.
    async fn confirm(&self, question: Question) -> bool;
    /// A note was posted (by any page).
    fn show(&self, note: Note);
}

/// The page's module: both services (the page calls Board and implements Page).
pub fn module() -> gotalk::typescript::Module {
    gotalk::typescript::Module::new()
        .service::<BoardService>()
        .service::<PageService>()
}
