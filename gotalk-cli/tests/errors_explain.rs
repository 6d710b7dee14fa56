//! Errors that say what happened and what to do: a port that is not gotalk (HTTP, TLS, a
//! banner), a peer that breaks the protocol or closes with a protocol error, a self-signed
//! certificate, `--insecure`. And the small ones: `decode` counts "1 frame", `bench` says its
//! failure once, `proxy --help` offers only what the proxy does.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use gotalk::transport::tls::TlsServerConfig;
use gotalk::{Config, Server};

/// A peer on a real socket that is not (or not quite) gotalk: it accepts one connection,
/// answers `reply` to whatever arrives first, and holds the connection until the client
/// hangs up.
fn scripted_peer(reply: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let _ = s.set_read_timeout(Some(HANG));
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(reply);
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    addr
}

fn stderr_of(out: &std::process::Output) -> String {
    let err = text(&out.stderr);
    assert!(
        !err.contains("::"),
        "a Rust path in a message for people: {err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_is_not_gotalk_is_named_as_such() {
    // An HTTP server answering what HTTP servers answer to bytes that are not HTTP.
    let http = scripted_peer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let out = gotalk_async(&["call", &http, "greet", "{}"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("this is not a gotalk peer"), "{err}");
    assert!(
        err.contains(r#"it answered "HTTP/1.1 400 Bad Request\r\n"#),
        "{err}"
    );
    assert!(err.contains("ws://HOST:PORT/PATH"), "{err}");

    // A real HTTP server (our own WebSocket endpoint, hyper underneath) says nothing until it
    // has a request: the wait is short and the message says what silence means.
    let ws = Server::bind("ws://127.0.0.1:0/gotalk/", Config::new())
        .await
        .unwrap();
    let hp = format!("127.0.0.1:{}", port_of(&ws.local_addr().to_string()));
    let started = Instant::now();
    let out = gotalk_async(&["call", &hp, "greet", "{}", "--timeout", "1s"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("this is not a gotalk peer") && err.contains("nothing came back"),
        "{err}"
    );
    assert!(err.contains("ws://HOST:PORT/PATH"), "{err}");
    assert!(started.elapsed() < HANG);
    // The right address works.
    let url = format!("ws://{hp}/gotalk/");
    let out = gotalk_async(&["call", &url, "no-such-op"], b"").await;
    assert!(
        text(&out.stderr).contains("unknown operation"),
        "{}",
        text(&out.stderr)
    );

    // An SSH-like banner, with an escape sequence in it for good measure.
    let banner = scripted_peer(b"SSH-2.0-OpenSSH_9.2\x1b[2J\r\n");
    let out = gotalk_async(&["notify", &banner, "n"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains(r#"it answered "SSH-2.0-OpenSSH_9.2\x1b[2J\r\n""#),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_plain_ports_mixed_up() {
    let dir = temp_dir("mixed-up");
    write_certs(&dir);
    let tls = TlsServerConfig::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).unwrap();
    let (config, _rx) = test_config();
    let tls_server = Server::bind_tls("127.0.0.1:0", config, tls).await.unwrap();
    let tls_port = port_of(&tls_server.local_addr().to_string());
    let ca = dir.join("ca.pem").display().to_string();

    // tls:// to a plain gotalk port: its version came back in the clear.
    let (_plain, plain_addr, _rx) = tcp_server().await;
    let out = gotalk_async(
        &[
            "call",
            &format!("tls://localhost:{}", port_of(&plain_addr)),
            "echo",
            "--cacert",
            &ca,
        ],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("does not speak TLS") && err.contains("use tcp://"),
        "{err}"
    );

    // tcp:// to a TLS port.
    let out = gotalk_async(
        &[
            "call",
            &format!("127.0.0.1:{tls_port}"),
            "echo",
            "--timeout",
            "2s",
        ],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("tls://"), "{err}");
    tls_server.shutdown(Duration::from_millis(100)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_gets_a_hint_that_works() {
    use rcgen::{CertificateParams, KeyPair};
    let dir = temp_dir("self-signed");
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = dir.join("self.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(dir.join("self.key"), key.serialize_pem()).unwrap();
    let tls = TlsServerConfig::from_pem_files(&cert_path, dir.join("self.key")).unwrap();
    let (config, _rx) = test_config();
    let server = Server::bind_tls("127.0.0.1:0", config, tls).await.unwrap();
    let addr = format!(
        "tls://localhost:{}",
        port_of(&server.local_addr().to_string())
    );

    let out = gotalk_async(&["call", &addr, "echo", "--raw", "hi"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("self-signed") && err.contains("--cacert") && err.contains("--insecure"),
        "{err}"
    );
    // What the hint says to do works: trust the certificate itself...
    let cacert = cert_path.display().to_string();
    let out = gotalk_async(
        &["call", &addr, "echo", "--raw", "hi", "--cacert", &cacert],
        b"",
    )
    .await;
    assert_eq!(out.stdout, b"hi", "{}", text(&out.stderr));
    // ...or, for testing, check nothing, with a warning that cannot be missed.
    let out = gotalk_async(&["call", &addr, "echo", "--raw", "hi", "--insecure"], b"").await;
    assert_eq!(out.stdout, b"hi", "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("WARNING: --insecure"));
    // A name the certificate is not for.
    let other = addr.replace("localhost", "127.0.0.1");
    let out = gotalk_async(
        &["call", &other, "echo", "--raw", "hi", "--cacert", &cacert],
        b"",
    )
    .await;
    let err = stderr_of(&out);
    assert!(err.contains("not issued for \"127.0.0.1\""), "{err}");
    server.shutdown(Duration::from_millis(100)).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A self-signed certificate marked as a CA (what `openssl req -x509` makes by default) is
/// refused even when trusted with --cacert: the hint says so and what to do instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_ca_certificate_gets_its_own_hint() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = temp_dir("self-signed-ca");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.join("ca-self.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(dir.join("ca-self.key"), key.serialize_pem()).unwrap();
    let tls = TlsServerConfig::from_pem_files(&cert_path, dir.join("ca-self.key")).unwrap();
    let (config, _rx) = test_config();
    let server = Server::bind_tls("127.0.0.1:0", config, tls).await.unwrap();
    let addr = format!(
        "tls://localhost:{}",
        port_of(&server.local_addr().to_string())
    );
    let cacert = cert_path.display().to_string();
    for extra in [&[][..], &["--cacert", &cacert][..]] {
        let mut args = vec!["call", &addr, "echo", "--raw", "hi"];
        args.extend_from_slice(extra);
        let out = gotalk_async(&args, b"").await;
        assert_eq!(out.status.code(), Some(1));
        let err = stderr_of(&out);
        assert!(
            err.contains("presents a CA certificate as its own")
                && err.contains("CA:FALSE")
                && err.contains("--insecure"),
            "{args:?}: {err}"
        );
    }
    let out = gotalk_async(&["call", &addr, "echo", "--raw", "hi", "--insecure"], b"").await;
    assert_eq!(out.stdout, b"hi", "{}", text(&out.stderr));
    server.shutdown(Duration::from_millis(100)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_say_who_broke_the_protocol() {
    // The peer sends garbage after its version: it broke the protocol, not us.
    let garbage = scripted_peer(b"01zzzzzzzz");
    let out = gotalk_async(&["call", &garbage, "echo"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("the peer sent something that is not valid gotalk"),
        "{err}"
    );
    assert!(!err.contains("we sent"), "{err}");

    // The peer closes with a protocol error of its own.
    let closing = scripted_peer(b"01f00000002");
    let out = gotalk_async(&["call", &closing, "echo"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("the peer closed the connection with protocol error 2"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_ones() {
    let out = gotalk(&["decode"], b"01");
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("1 frame, 2 bytes, valid"),
        "{}",
        text(&out.stderr)
    );
    let out = gotalk(&["decode"], b"01n004ping00000000");
    assert!(
        text(&out.stderr).contains("2 frames"),
        "{}",
        text(&out.stderr)
    );

    let help = text(&gotalk(&["proxy", "--help"], b"").stdout);
    assert!(
        !help.contains("wss://") && !help.contains("ws://"),
        "{help}"
    );

    // A failing bench says why exactly once.
    let (_server, addr, _rx) = tcp_server().await;
    let out = gotalk_async(
        &["bench", &addr, "--op", "no-such-op", "--duration", "100ms"],
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(all.matches("unknown operation").count(), 1, "{all}");
}
