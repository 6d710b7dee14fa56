//! Typed services between two Rust programs (here two ends of one TCP connection): each side
//! offers a service defined as a trait, and calls the other's through a generated client.
//! Requests, a typed error, a notification, streams of parts both ways, and the server calling
//! back the client that called it.
//!
//! ```text
//! cargo run --example typed            # runs both ends, prints what they say, exits 0
//! cargo run --example typed -- --check # the same (a self-test like the other examples')
//! ```

use std::time::Duration;

use gotalk::service::{CallError, Parts};
use gotalk::{Config, HandlerError, Handlers, Limits, Server, Sock};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
struct GreetIn {
    name: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct GreetOut {
    greeting: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Divide {
    a: f64,
    b: f64,
}

/// A declared error type: the client gets it back as a value, not as text.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum MathError {
    DivideByZero,
}

/// What the server offers.
#[gotalk::service]
trait Greeter {
    /// Greets by name (op `greet`, JSON `{"name"}` → `{"greeting"}`, as a hand-written
    /// handler would).
    async fn greet(&self, input: GreetIn) -> GreetOut;
    /// Greets the caller, asking it for its name first: the server calls the client.
    async fn greet_me(&self, sock: &Sock) -> Result<GreetOut, HandlerError>;
    /// Divides, or says why not.
    async fn divide(&self, input: Divide) -> Result<f64, MathError>;
    /// Counts down from `from` to 1, one stream part per number.
    async fn countdown(&self, from: u32) -> Parts<u32>;
    /// Adds up the numbers it is sent, one stream part each.
    async fn total(&self, values: Parts<f64>) -> f64;
    /// A notification, renamed on the wire.
    #[gotalk(name = "log/line")]
    fn log(&self, line: String);
}

/// What the client offers the server.
#[gotalk::service]
trait Visitor {
    /// The visitor's name.
    async fn name(&self) -> String;
}

struct Server1;

impl Greeter for Server1 {
    async fn greet(&self, input: GreetIn) -> GreetOut {
        GreetOut {
            greeting: format!("Hello {}", input.name),
        }
    }

    async fn greet_me(&self, sock: &Sock) -> Result<GreetOut, HandlerError> {
        let name = VisitorClient::new(sock).name().await?;
        Ok(self.greet(GreetIn { name }).await)
    }

    async fn divide(&self, input: Divide) -> Result<f64, MathError> {
        if input.b == 0.0 {
            return Err(MathError::DivideByZero);
        }
        Ok(input.a / input.b)
    }

    async fn countdown(&self, from: u32) -> Parts<u32> {
        Parts::iter((1..=from).rev())
    }

    async fn total(&self, mut values: Parts<f64>) -> f64 {
        let mut sum = 0.0;
        while let Ok(Some(v)) = values.recv().await {
            sum += v;
        }
        sum
    }

    fn log(&self, line: String) {
        println!("server log: {line}");
    }
}

struct Rasmus;

impl Visitor for Rasmus {
    async fn name(&self) -> String {
        "Rasmus".into()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Streams are off by default; both ends allow a few at a time.
    let limits = Limits::default().stream_requests(4);

    let mut handlers = Handlers::new();
    handlers.service(GreeterServer::new(Server1));
    let config = Config::new().handlers(handlers).limits(limits.clone());
    let server = Server::bind("127.0.0.1:0", config).await?;

    let mut handlers = Handlers::new();
    handlers.service(VisitorServer::new(Rasmus));
    let config = Config::new().handlers(handlers).limits(limits);
    let sock = gotalk::connect_with(&server.local_addr().to_string(), &config).await?;
    let greeter = GreeterClient::new(&sock);

    let out = greeter.greet(GreetIn { name: "Bob".into() }).await?;
    println!("greet: {}", out.greeting);
    assert_eq!(out.greeting, "Hello Bob");

    let out = greeter.greet_me().await?;
    println!("greet_me (the server asked us our name): {}", out.greeting);
    assert_eq!(out.greeting, "Hello Rasmus");

    println!(
        "divide 1/4: {}",
        greeter.divide(Divide { a: 1.0, b: 4.0 }).await?
    );
    match greeter.divide(Divide { a: 1.0, b: 0.0 }).await {
        Err(CallError::Service(e)) => {
            println!("divide 1/0: {e:?}");
            assert_eq!(e, MathError::DivideByZero);
        }
        other => return Err(format!("expected a MathError, got {other:?}").into()),
    }

    // Notifications are handled in order with the requests that follow them.
    greeter.log("the client was here".into()).await?;

    let numbers = greeter.countdown(3).await?.into_vec().await?;
    println!("countdown: {numbers:?}");
    assert_eq!(numbers, [3, 2, 1]);

    let sum = greeter.total(vec![1.5, 2.5, 38.0].into()).await?;
    println!("total: {sum}");
    assert_eq!(sum, 42.0);

    sock.close();
    server.shutdown(Duration::from_secs(1)).await;
    println!("check ok");
    Ok(())
}
