//! Typed services between Rust and a web page, both ways. The server offers `Board` (notes:
//! list, post, search, shout); the page offers `Page` (confirm, show). Both are defined once in
//! `service.rs`; the page uses the TypeScript module generated from them (`service.ts`, served
//! to the browser as `/service.js`), so a typo in an operation or a field fails `tsc`, not
//! production. Posting a note shows the two directions: the page calls `post`, the server asks
//! that page to `confirm`, then tells every page to `show` the note.
//!
//! ```text
//! cargo run --example typed-web                  # then open the URL it prints
//! cargo run --example typed-web -- --addr 127.0.0.1:8080
//! cargo run --example typed-web -- --check       # the page's self-test in headless Chromium, then exit
//! cargo run --example typed-web -- --ts          # print the TypeScript module (service.ts)
//! ```
//!
//! `--check` runs `/usr/bin/chromium` (or `$CHROMIUM`) on the page with `?check`: the page
//! calls every Board method through the generated client, answers the server's `confirm`, waits
//! for its `show`, and reports what it found with `report`; the example exits 0 when all passed.

mod service;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use gotalk::service::Parts;
use gotalk::ws::axum::http::header;
use gotalk::ws::axum::{response::Html, routing::get, Router};
use gotalk::ws::Endpoint;
use gotalk::{Config, Handlers, Limits, Sock};
use service::*;
use tokio::sync::mpsc;

const MAX_TEXT: usize = 200;
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Notes {
    notes: Mutex<Vec<Note>>,
    pages: Mutex<Vec<Sock>>,
    reports: Option<mpsc::UnboundedSender<CheckReport>>,
}

impl Board for Notes {
    async fn list(&self) -> Vec<Note> {
        self.notes.lock().unwrap().clone()
    }

    async fn post(&self, sock: &Sock, note: NewNote) -> Result<Note, PostError> {
        let text = note.text.trim();
        if text.is_empty() {
            return Err(PostError::Empty);
        }
        if text.chars().count() > MAX_TEXT {
            return Err(PostError::TooLong {
                max: MAX_TEXT as u32,
            });
        }
        // The other direction: the server calls the page's typed method.
        let question = Question {
            text: format!("Post “{text}”?"),
        };
        let page = PageClient::new(sock);
        let asked = page.confirm(question);
        if !matches!(
            tokio::time::timeout(CONFIRM_TIMEOUT, asked).await,
            Ok(Ok(true))
        ) {
            return Err(PostError::NotConfirmed);
        }
        let note = {
            let mut notes = self.notes.lock().unwrap();
            let note = Note {
                id: notes.len() as u64 + 1,
                text: text.to_owned(),
            };
            notes.push(note.clone());
            note
        };
        let pages = self.pages.lock().unwrap().clone();
        for page in pages {
            // A page that just left is no reason to fail the post.
            let _ = PageClient::new(&page).show(note.clone()).await;
        }
        Ok(note)
    }

    async fn search(&self, query: String) -> Parts<Note> {
        let found: Vec<Note> = self
            .notes
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.text.contains(&query))
            .cloned()
            .collect();
        Parts::iter(found)
    }

    async fn shout(&self, lines: Parts<String>) -> Parts<String> {
        Parts::new(lines.map(|line| line.map(|l| l.to_uppercase())))
    }

    fn report(&self, sock: &Sock, report: CheckReport) {
        println!(
            "self-test of page {}: {}",
            sock.peer_addr().unwrap_or("?"),
            if report.ok { "ok" } else { "FAILED" }
        );
        for line in &report.lines {
            println!("  {line}");
        }
        if let Some(tx) = &self.reports {
            let _ = tx.send(report);
        }
    }
}

fn app(notes: Arc<Notes>) -> Router {
    let mut handlers = Handlers::new();
    handlers.service(BoardServer::from_arc(notes.clone()));
    let (opened, closed) = (notes.clone(), notes);
    let config = Config::new()
        .handlers(handlers)
        .limits(Limits::default().stream_requests(8))
        .on_open(move |sock| opened.pages.lock().unwrap().push(sock.clone()))
        .on_close(move |sock, _| closed.pages.lock().unwrap().retain(|s| !s.same_as(sock)));
    // The page's module, from the same definitions as the Rust code, once.
    let module: &'static str = Box::leak(service::module().javascript().into_boxed_str());
    let js = |body: &'static str| ([(header::CONTENT_TYPE, "text/javascript")], body);
    Router::new()
        .route("/", get(|| async { Html(include_str!("page.html")) }))
        .route(
            "/page.js",
            get(move || async move { js(include_str!("page.js")) }),
        )
        .route("/service.js", get(move || async move { js(module) }))
        .merge(Endpoint::new(config).router("/gotalk/"))
}

async fn serve(
    addr: &str,
    notes: Arc<Notes>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = app(notes).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        if let Err(e) = gotalk::ws::axum::serve(listener, app).await {
            eprintln!("server failed: {e}");
        }
    });
    Ok((local, task))
}

/// Runs the page's self-test in headless Chromium and waits for its report.
async fn check() -> Result<(), Box<dyn std::error::Error>> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        return Err(format!("--check needs Chromium at {chromium} (or set $CHROMIUM)").into());
    }
    let (tx, mut reports) = mpsc::unbounded_channel();
    let notes = Arc::new(Notes {
        reports: Some(tx),
        ..Notes::default()
    });
    let (addr, task) = serve("127.0.0.1:0", notes).await?;
    let url = format!("http://{addr}/?check");
    let profile = std::env::temp_dir().join(format!("gotalk-typed-web-{}", std::process::id()));
    std::fs::create_dir_all(&profile)?;
    let mut browser = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    println!("headless Chromium on {url}");
    let report = tokio::time::timeout(Duration::from_secs(45), reports.recv()).await;
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
    task.abort();
    match report {
        Ok(Some(r)) if r.ok => {
            println!("check ok");
            Ok(())
        }
        Ok(Some(_)) => Err("the page's self-test failed".into()),
        _ => Err("no report from the page within 45 s".into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--ts") {
        print!("{}", service::module().typescript());
        return Ok(());
    }
    if args.iter().any(|a| a == "--check") {
        return check().await;
    }
    let addr = args
        .iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1))
        .map_or("127.0.0.1:1237", String::as_str);
    let (local, task) = serve(addr, Arc::default()).await?;
    println!("open http://{local}/ (Ctrl-C to stop)");
    task.await?;
    Ok(())
}
