//! `#[gotalk::service]` over real TCP: every kind of method (requests, typed errors,
//! notifications, the three shapes of streams), both directions on one connection, and the
//! generated code against handlers and requests written by hand (same op names, same JSON).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gotalk::service::{CallError, MethodDef, MethodKind, Parts, ServiceDef};
use gotalk::{Config, Error, HandlerError, Handlers, Server, Sock};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct GreetIn {
    name: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct GreetOut {
    greeting: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum MathError {
    DivideByZero,
    TooLarge { limit: f64 },
}

impl std::fmt::Display for MathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Divide {
    a: f64,
    b: f64,
}

/// What the server offers.
#[gotalk::service]
trait Calc {
    /// Greets by name.
    async fn greet(&self, input: GreetIn) -> GreetOut;
    /// Fails with a message for an empty name.
    async fn check_name(&self, input: GreetIn) -> Result<(), HandlerError>;
    /// Typed errors.
    async fn divide(&self, input: Divide) -> Result<f64, MathError>;
    /// No input; asks the caller back (the server calls the client's service).
    async fn whoami(&self, sock: &Sock) -> Result<String, HandlerError>;
    /// A notification, renamed on the wire.
    #[gotalk(name = "log/line")]
    fn log(&self, line: String);
    /// Result parts for one input.
    async fn count(&self, to: u32) -> Parts<u32>;
    /// Parts in, one result.
    async fn sum(&self, values: Parts<f64>) -> Result<f64, MathError>;
    /// Parts both ways.
    async fn upper(&self, lines: Parts<String>) -> Parts<String>;
}

/// What the client offers to the server, on the same connection.
#[gotalk::service(rename_all = "kebab-case")]
trait Peer {
    async fn get_name(&self) -> String;
}

struct CalcImpl {
    logged: mpsc::UnboundedSender<String>,
}

impl Calc for CalcImpl {
    async fn greet(&self, input: GreetIn) -> GreetOut {
        GreetOut {
            greeting: format!("Hello {}", input.name),
        }
    }

    async fn check_name(&self, input: GreetIn) -> Result<(), HandlerError> {
        if input.name.is_empty() {
            return Err(HandlerError::msg("empty name"));
        }
        Ok(())
    }

    async fn divide(&self, input: Divide) -> Result<f64, MathError> {
        if input.b == 0.0 {
            return Err(MathError::DivideByZero);
        }
        Ok(input.a / input.b)
    }

    async fn whoami(&self, sock: &Sock) -> Result<String, HandlerError> {
        let name = PeerClient::new(sock).get_name().await?;
        Ok(format!("you are {name}"))
    }

    fn log(&self, line: String) {
        let _ = self.logged.send(line);
    }

    async fn count(&self, to: u32) -> Parts<u32> {
        Parts::iter(1..=to)
    }

    async fn sum(&self, mut values: Parts<f64>) -> Result<f64, MathError> {
        let mut total = 0.0;
        while let Ok(Some(v)) = values.recv().await {
            total += v;
            if total > 1000.0 {
                return Err(MathError::TooLarge { limit: 1000.0 });
            }
        }
        Ok(total)
    }

    async fn upper(&self, mut lines: Parts<String>) -> Parts<String> {
        let (tx, out) = Parts::channel(4);
        tokio::spawn(async move {
            loop {
                match lines.recv().await {
                    Ok(Some(line)) => {
                        if line == "fail" {
                            let _ = tx.send(Err(Error::Remote("no fail, please".into()))).await;
                            return;
                        }
                        if tx.send(Ok(line.to_uppercase())).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        out
    }
}

struct Named(&'static str);

impl Peer for Named {
    async fn get_name(&self) -> String {
        self.0.to_owned()
    }
}

fn streams_on() -> gotalk::Limits {
    gotalk::Limits::default().stream_requests(8)
}

async fn calc_server() -> (Server, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut handlers = Handlers::new();
    handlers.service(CalcServer::new(CalcImpl { logged: tx }));
    let config = Config::new().handlers(handlers).limits(streams_on());
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    (server, rx)
}

async fn client_of(server: &Server, name: &'static str) -> Sock {
    let mut handlers = Handlers::new();
    handlers.service(PeerServer::new(Named(name)));
    let config = Config::new().handlers(handlers).limits(streams_on());
    gotalk::connect_with(&server.local_addr().to_string(), &config)
        .await
        .unwrap()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("hang guard")
}

#[tokio::test]
async fn requests_errors_and_notifications() {
    let (server, mut logged) = calc_server().await;
    let sock = client_of(&server, "alice").await;
    let calc = CalcClient::new(&sock);
    within(async {
        let out = calc.greet(GreetIn { name: "Bob".into() }).await.unwrap();
        assert_eq!(out.greeting, "Hello Bob");

        calc.check_name(GreetIn { name: "x".into() }).await.unwrap();
        let e = calc
            .check_name(GreetIn { name: "".into() })
            .await
            .unwrap_err();
        assert!(matches!(&e, Error::Remote(m) if m == "empty name"), "{e:?}");

        assert_eq!(calc.divide(Divide { a: 1.0, b: 4.0 }).await.unwrap(), 0.25);
        match calc.divide(Divide { a: 1.0, b: 0.0 }).await {
            Err(CallError::Service(MathError::DivideByZero)) => {}
            other => panic!("{other:?}"),
        }

        // Both directions on one connection: the server's handler calls the client's service.
        assert_eq!(calc.whoami().await.unwrap(), "you are alice");

        calc.log("one".into()).await.unwrap();
        calc.log("two".into()).await.unwrap();
        assert_eq!(logged.recv().await.unwrap(), "one");
        assert_eq!(logged.recv().await.unwrap(), "two");
    })
    .await;
    sock.close();
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn streams() {
    let (server, _logged) = calc_server().await;
    let sock = client_of(&server, "alice").await;
    let calc = CalcClient::new(sock.clone());
    within(async {
        let counted = calc.count(5).await.unwrap().into_vec().await.unwrap();
        assert_eq!(counted, [1, 2, 3, 4, 5]);
        assert!(calc
            .count(0)
            .await
            .unwrap()
            .into_vec()
            .await
            .unwrap()
            .is_empty());

        let total = calc.sum(vec![1.5, 2.5, 3.0].into()).await.unwrap();
        assert_eq!(total, 7.0);
        assert_eq!(calc.sum(Parts::empty()).await.unwrap(), 0.0);
        match calc.sum(vec![600.0, 600.0, 1.0].into()).await {
            Err(CallError::Service(MathError::TooLarge { limit })) => assert_eq!(limit, 1000.0),
            other => panic!("{other:?}"),
        }

        // Parts both ways, fed from a channel while the results are read.
        let (tx, input) = Parts::channel(1);
        let mut out = calc.upper(input).await.unwrap();
        for word in ["a", "bc", "déf"] {
            tx.send(Ok(word.to_owned())).await.unwrap();
            assert_eq!(
                out.recv().await.unwrap().unwrap(),
                word.to_uppercase(),
                "one part back for each part sent"
            );
        }
        drop(tx);
        assert_eq!(out.recv().await.unwrap(), None);

        // A result stream that fails ends with the error's text.
        let out = calc.upper(vec!["ok".into(), "fail".into()].into()).await;
        let mut out = out.unwrap();
        assert_eq!(out.recv().await.unwrap().unwrap(), "OK");
        let e = out.recv().await.unwrap_err();
        assert!(
            matches!(&e, Error::Remote(m) if m == "no fail, please"),
            "{e:?}"
        );

        // An error in our own input ends the request and comes back as the last result.
        let input = Parts::new(futures_util::stream::iter(vec![
            Ok("x".to_owned()),
            Err(Error::Timeout("producing input")),
        ]));
        let mut out = calc.upper(input).await.unwrap();
        assert_eq!(out.recv().await.unwrap().unwrap(), "X");
        let e = out.recv().await.unwrap_err();
        assert!(matches!(e, Error::Timeout("producing input")), "{e:?}");
    })
    .await;
    sock.close();
    server.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn description() {
    assert_eq!(CalcService::NAME, "Calc");
    let names: Vec<&str> = CalcService::METHODS.iter().map(|m| m.name).collect();
    assert_eq!(
        names,
        [
            "greet",
            "check_name",
            "divide",
            "whoami",
            "log/line",
            "count",
            "sum",
            "upper"
        ]
    );
    assert_eq!(
        CalcService::METHODS[2],
        MethodDef {
            method: "divide",
            name: "divide",
            kind: MethodKind::Request,
            typed_error: true
        }
    );
    assert_eq!(CalcService::METHODS[4].kind, MethodKind::Notification);
    assert_eq!(
        CalcService::METHODS[6].kind,
        MethodKind::Stream {
            input: true,
            output: false
        }
    );
    assert_eq!(PeerService::METHODS[0].name, "get-name");
}

// ---- the generated code against code written by hand ------------------------------------------

/// The Calc operations written by hand with the untyped API.
fn hand_written(log: Arc<Mutex<Vec<String>>>) -> Handlers {
    let mut h = Handlers::new();
    h.handle("greet", |input: GreetIn| async move {
        Ok(GreetOut {
            greeting: format!("Hello {}", input.name),
        })
    });
    h.handle("divide", |d: Divide| async move {
        if d.b == 0.0 {
            return Err(HandlerError::msg(r#"{"kind":"divide_by_zero"}"#));
        }
        Ok(d.a / d.b)
    });
    h.handle_with_sock("whoami", |sock: Sock, _: ()| async move {
        let name: String = sock.request("get-name", &()).await?;
        Ok(format!("you are {name}"))
    });
    h.handle_notification("log/line", move |line: String| {
        log.lock().unwrap().push(line);
    });
    h.handle_stream("count", |_sock, _op, mut input, mut output| async move {
        let to: u32 = serde_json::from_slice(&input.recv().await?.unwrap_or_default())?;
        for i in 1..=to {
            output.write(i.to_string()).await?;
        }
        Ok(())
    });
    h
}

#[tokio::test]
async fn generated_client_against_handlers_written_by_hand() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let config = Config::new()
        .handlers(hand_written(log.clone()))
        .limits(streams_on());
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let sock = client_of(&server, "carol").await;
    let calc = CalcClient::new(&sock);
    within(async {
        let out = calc.greet(GreetIn { name: "Bob".into() }).await.unwrap();
        assert_eq!(out.greeting, "Hello Bob");
        assert_eq!(calc.divide(Divide { a: 3.0, b: 2.0 }).await.unwrap(), 1.5);
        assert!(matches!(
            calc.divide(Divide { a: 1.0, b: 0.0 }).await,
            Err(CallError::Service(MathError::DivideByZero))
        ));
        assert_eq!(calc.whoami().await.unwrap(), "you are carol");
        assert_eq!(
            calc.count(3).await.unwrap().into_vec().await.unwrap(),
            [1, 2, 3]
        );
        // An operation the hand-written peer lacks: the library's error, not a typed one.
        let e = calc.sum(vec![1.0].into()).await.unwrap_err();
        assert!(
            matches!(&e, CallError::Call(Error::Remote(m)) if m == "unknown operation \"sum\""),
            "{e:?}"
        );
        calc.log("by hand".into()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while log.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*log.lock().unwrap(), ["by hand"]);
    })
    .await;
    sock.close();
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn requests_written_by_hand_against_the_generated_server() {
    let (server, mut logged) = calc_server().await;
    let mut handlers = Handlers::new();
    let asked = Arc::new(AtomicU32::new(0));
    let a = asked.clone();
    handlers.handle("get-name", move |_: ()| {
        a.fetch_add(1, Ordering::SeqCst);
        async move { Ok("dave") }
    });
    let config = Config::new().handlers(handlers).limits(streams_on());
    let sock = gotalk::connect_with(&server.local_addr().to_string(), &config)
        .await
        .unwrap();
    within(async {
        let out: serde_json::Value = sock
            .request("greet", &serde_json::json!({"name": "Eve"}))
            .await
            .unwrap();
        assert_eq!(out, serde_json::json!({"greeting": "Hello Eve"}));
        // The typed error's JSON is the ErrorResult's text.
        let e = sock
            .request::<_, f64>("divide", &serde_json::json!({"a": 1, "b": 0}))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Remote(m) if m == r#"{"kind":"divide_by_zero"}"#),
            "{e:?}"
        );
        // JSON that does not decode is refused as a hand-written handler refuses it.
        let e = sock.buffer_request("greet", "not json").await.unwrap_err();
        assert!(
            matches!(&e, Error::Remote(m) if m == "unexpected parameter type: expected ident at line 1 column 2"),
            "{e:?}"
        );
        let me: String = sock.request("whoami", &()).await.unwrap();
        assert_eq!(me, "you are dave");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        sock.notify("log/line", "raw").await.unwrap();
        assert_eq!(logged.recv().await.unwrap(), "raw");

        let (mut tx, mut rx) = sock.stream_request("upper").await.unwrap();
        tx.write(r#""abc""#).await.unwrap();
        assert_eq!(&rx.recv().await.unwrap().unwrap()[..], br#""ABC""#);
        tx.end().await.unwrap();
        assert!(rx.recv().await.unwrap().is_none());

        let (mut tx, mut rx) = sock.stream_request("sum").await.unwrap();
        for v in ["1", "2", "3.5"] {
            tx.write(v).await.unwrap();
        }
        tx.end().await.unwrap();
        assert_eq!(rx.collect().await.unwrap(), b"6.5");
    })
    .await;
    sock.close();
    server.shutdown(Duration::from_secs(1)).await;
}

/// The generated client over a `Pool` of two servers (calls spread over both, streams and
/// notifications included) and over a `KeepAlive` that outlives its server's restart.
#[tokio::test]
async fn the_generated_client_over_a_pool_and_a_keepalive() {
    use gotalk::pool::{KeepAlive, Pool, PoolOptions};
    let (a, mut logged_a) = calc_server().await;
    let (b, mut logged_b) = calc_server().await;
    let addrs = [a.local_addr().to_string(), b.local_addr().to_string()];
    let config = Config::new().limits(streams_on());
    let pool = Pool::open(addrs.clone(), config.clone(), PoolOptions::new()).unwrap();
    let calc = CalcClient::new(&pool);
    within(async {
        for i in 0..40 {
            let out = calc
                .greet(GreetIn {
                    name: format!("n{i}"),
                })
                .await
                .unwrap();
            assert_eq!(out.greeting, format!("Hello n{i}"));
        }
        match calc.divide(Divide { a: 1.0, b: 0.0 }).await {
            Err(CallError::Service(MathError::DivideByZero)) => {}
            other => panic!("{other:?}"),
        }
        let counted = calc.count(3).await.unwrap().into_vec().await.unwrap();
        assert_eq!(counted, [1, 2, 3]);
        assert_eq!(calc.sum(vec![1.0, 2.5].into()).await.unwrap(), 3.5);
        for i in 0..10 {
            calc.log(format!("line {i}")).await.unwrap();
        }
        let mut got = 0;
        while got < 10 {
            tokio::select! {
                Some(_) = logged_a.recv() => got += 1,
                Some(_) = logged_b.recv() => got += 1,
            }
        }
    })
    .await;
    let served: Vec<u64> = pool.stats().iter().map(|s| s.requests).collect();
    assert!(
        served.iter().all(|&n| n > 0),
        "both responders used: {served:?}"
    );
    pool.close();

    // A keep-alive connection: the same client before and after its server restarts.
    let addr = addrs[0].clone();
    // `greet` may run twice: a call that finds the old connection closed is sent again.
    let options = PoolOptions::new().safe_to_repeat(["greet"]);
    let conn = KeepAlive::open(&addr, config, options).unwrap();
    conn.connected(Duration::from_secs(10)).await.unwrap();
    let calc = CalcClient::new(&conn);
    let greet = |n: &str| GreetIn { name: n.into() };
    assert_eq!(
        within(calc.greet(greet("x"))).await.unwrap().greeting,
        "Hello x"
    );
    a.shutdown(Duration::from_secs(1)).await;
    let mut handlers = Handlers::new();
    let (tx, _rx) = mpsc::unbounded_channel();
    handlers.service(CalcServer::new(CalcImpl { logged: tx }));
    let again = Server::bind(&addr, Config::new().handlers(handlers).limits(streams_on()))
        .await
        .unwrap();
    let out = within(calc.greet(greet("y"))).await.unwrap();
    assert_eq!(out.greeting, "Hello y");
    assert!(conn.connects() >= 2, "reconnected: {}", conn.connects());
    conn.close();
    again.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}
