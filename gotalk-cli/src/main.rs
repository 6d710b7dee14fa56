//! `gotalk`: talk to gotalk peers from the shell. See `gotalk --help`.
//!
//! Exit codes: 0 success, 1 failure (an error result from the peer, a connection that failed,
//! an invalid stream for `decode`), 2 usage errors.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

const ADDRS: &str = "Addresses: tcp://HOST:PORT (or HOST:PORT), unix:///PATH, tls://HOST:PORT, \
                     ws://HOST:PORT/PATH, wss://HOST:PORT/PATH";

/// Talk to gotalk peers: call operations, send notifications, watch and decode conversations,
/// run the demo server, measure throughput.
#[derive(Parser, Debug)]
#[command(name = "gotalk", version, after_help = ADDRS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Call an operation and print its result
    #[command(after_help = cmd::call::CALL_HELP)]
    Call(cmd::call::CallArgs),
    /// Send a notification
    Notify(cmd::call::NotifyArgs),
    /// Accept connections and print every request and notification that arrives
    #[command(after_help = cmd::listen::HELP)]
    Listen(cmd::listen::ListenArgs),
    /// Run the demo server: a web page with a chat and an echo/greet console, plus TCP
    Serve(cmd::serve::ServeArgs),
    /// Load-test a server: requests/s, MB/s, latency percentiles
    #[command(after_help = cmd::bench::HELP)]
    Bench(cmd::bench::BenchArgs),
    /// Forward a conversation unchanged while printing every message decoded
    #[command(after_help = cmd::proxy::HELP)]
    Proxy(cmd::proxy::ProxyArgs),
    /// Decode a captured byte stream (or a conformance transcript) and report where it breaks
    #[command(after_help = cmd::decode::HELP)]
    Decode(cmd::decode::DecodeArgs),
}

fn main() -> ExitCode {
    // clap prints help/version and exits 0, or prints a usage error and exits 2.
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gotalk: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let res = rt.block_on(async move {
        match cli.command {
            Command::Call(a) => cmd::call::call(a).await,
            Command::Notify(a) => cmd::call::notify(a).await,
            Command::Listen(a) => cmd::listen::run(a).await,
            Command::Serve(a) => cmd::serve::run(a).await,
            Command::Bench(a) => cmd::bench::run(a).await,
            Command::Proxy(a) => cmd::proxy::run(a).await,
            Command::Decode(a) => cmd::decode::run(a).await,
        }
    });
    // Background tasks (connections, accept loops) must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gotalk: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
