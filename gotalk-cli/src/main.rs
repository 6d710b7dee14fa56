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
    /// Stay connected: send what is typed, print what arrives (an interactive session)
    #[command(after_help = cmd::connect::HELP)]
    Connect(cmd::connect::ConnectArgs),
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
    /// Print a shell completion script
    #[command(after_help = COMPLETIONS_HELP)]
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per subcommand into a directory
    #[command(after_help = MAN_HELP)]
    Man {
        /// Write gotalk.1 and gotalk-SUBCOMMAND.1 into this directory instead
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

const COMPLETIONS_HELP: &str = "\
Examples:
  gotalk completions bash > ~/.local/share/bash-completion/completions/gotalk
  gotalk completions zsh > \"${fpath[1]}/_gotalk\"
  gotalk completions fish > ~/.config/fish/completions/gotalk.fish";

const MAN_HELP: &str = "\
Examples:
  gotalk man | man -l -
  gotalk man --dir /usr/local/share/man/man1";

/// Completions and manual pages are made from the same definitions as `--help`.
fn generated(command: &Command) -> Option<ExitCode> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut cli = Cli::command();
    let res = match command {
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(*shell, &mut cli, "gotalk", &mut out);
            out.flush()
        }
        Command::Man { dir: Some(dir) } => clap_mangen::generate_to(cli, dir),
        Command::Man { dir: None } => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cli)
                .render(&mut out)
                .and_then(|()| out.flush())
        }
        _ => return None,
    };
    Some(match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gotalk: {e}");
            ExitCode::from(1)
        }
    })
}

fn main() -> ExitCode {
    // clap prints help/version and exits 0, or prints a usage error and exits 2.
    let cli = Cli::parse();
    if let Some(code) = generated(&cli.command) {
        return code;
    }
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
            Command::Connect(a) => cmd::connect::run(a).await,
            Command::Serve(a) => cmd::serve::run(a).await,
            Command::Bench(a) => cmd::bench::run(a).await,
            Command::Proxy(a) => cmd::proxy::run(a).await,
            Command::Decode(a) => cmd::decode::run(a).await,
            Command::Completions { .. } | Command::Man { .. } => Ok(ExitCode::SUCCESS),
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
