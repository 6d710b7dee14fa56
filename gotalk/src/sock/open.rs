//! Opening a connection: [`Sock::adopt`] builds the connection's state, starts its reader and
//! writer tasks, and waits for the peer's protocol version.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::reader::reader_task;
use super::writer::writer_task;
use super::{panic_message, Guard, Inner, Shared, Sock, LOAD_AUTO};
use crate::config::Config;
use crate::error::{CloseReason, Error, Result, Side};
use crate::frame::{encode_version, Message, ProtocolErrorCode, PROTOCOL_VERSION};
use crate::limits::Counters;
use crate::outbox::Outbox;
use crate::parts::Budget;
use crate::pending::Pending;

impl Sock {
    /// Takes over a connected byte stream (TCP, Unix, TLS, an in-memory pipe, anything
    /// `AsyncRead + AsyncWrite`), performs the version handshake and starts serving it.
    pub async fn adopt<T>(io: T, config: &Config, peer_addr: Option<String>) -> Result<Sock>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        Sock::adopt_split(r, w, config, peer_addr).await
    }

    /// Like [`Sock::adopt`], for a transport already split into read and write halves.
    pub async fn adopt_split<R, W>(
        reader: R,
        writer: W,
        config: &Config,
        peer_addr: Option<String>,
    ) -> Result<Sock>
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        Sock::adopt_split_with_info(reader, writer, config, peer_addr, None).await
    }

    /// Like [`Sock::adopt_split`], also keeping what the transport knows about the connection
    /// for [`Sock::transport_info`] (set before any callback or handler runs).
    pub(crate) async fn adopt_split_with_info<R, W>(
        reader: R,
        writer: W,
        config: &Config,
        peer_addr: Option<String>,
        transport_info: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Result<Sock>
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        let limits = config.limits.clone();
        let (closing_tx, closing_rx) = watch::channel(None);
        // Our protocol version goes first, whoever writes first.
        let mut out = Outbox::new(limits.write_buffer);
        let mut version = BytesMut::with_capacity(2);
        encode_version(&mut version, PROTOCOL_VERSION);
        out.batch().push_raw(&version);
        let _ = out.queued(false);
        let sock = Sock {
            inner: Arc::new(Inner {
                shared: parking_lot::Mutex::new(Shared {
                    pending: Pending::default(),
                    out,
                }),
                io: parking_lot::Mutex::new(Box::pin(writer)),
                closing: closing_tx,
                finished: watch::channel(false).0,
                handlers: config.handlers_or_default(),
                stream_budget: Budget::new(limits.stream_buffer),
                limits,
                counters: Counters::default(),
                heartbeat_load: AtomicU32::new(LOAD_AUTO),
                auto_retry: config.auto_retry,
                max_retry_wait: config.max_retry_wait,
                peer_addr,
                transport_info,
                data: parking_lot::Mutex::new(Vec::new()),
                guard: Mutex::new(Guard::Open(Vec::new())),
                callbacks: config.callbacks.clone(),
                opened: Instant::now(),
                peer_heartbeat: AtomicU64::new(0),
                last_activity: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                late_results: AtomicU64::new(0),
            }),
        };
        let (hs_tx, hs_rx) = oneshot::channel();
        tokio::spawn(contained(
            sock.clone(),
            writer_task(sock.clone(), closing_rx.clone(), config.heartbeat_interval),
        ));
        tokio::spawn(contained(
            sock.clone(),
            reader_task(sock.clone(), Box::pin(reader), closing_rx, hs_tx),
        ));
        let handshake = async {
            match config.limits.handshake_timeout {
                Some(t) => tokio::time::timeout(t, hs_rx).await,
                None => Ok(hs_rx.await),
            }
        };
        match handshake.await {
            Ok(Ok(Ok(()))) => Ok(sock),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::Closed(
                sock.close_reason().unwrap_or(CloseReason::PeerClosed),
            )),
            Err(_) => {
                sock.shutdown(
                    CloseReason::Protocol {
                        code: ProtocolErrorCode::TIMEOUT,
                        by: Side::Local,
                        detail: "no protocol version received".into(),
                    },
                    Some(Message::ProtocolError {
                        code: ProtocolErrorCode::TIMEOUT,
                    }),
                );
                Err(Error::Timeout("handshake"))
            }
        }
    }
}

/// Runs one of a connection's tasks so that a panic in it (say, in a user callback run by the
/// reader) closes that connection with a reason instead of leaving its requests waiting.
///
/// Not an `async fn`: one would keep `task` both as its argument and as the future it awaits,
/// doubling the memory every connection holds.
fn contained(
    sock: Sock,
    task: impl std::future::Future<Output = ()>,
) -> impl std::future::Future<Output = ()> {
    AssertUnwindSafe(task).catch_unwind().map(move |res| {
        if let Err(panic) = res {
            task_panicked(&sock, panic);
        }
    })
}

fn task_panicked(sock: &Sock, panic: Box<dyn Any + Send>) {
    let text = panic_message(&panic);
    tracing::error!("connection task panicked: {text}");
    sock.shutdown(
        CloseReason::Protocol {
            code: ProtocolErrorCode::ABNORMAL,
            by: Side::Local,
            detail: format!("internal error: {text}"),
        },
        Some(Message::ProtocolError {
            code: ProtocolErrorCode::ABNORMAL,
        }),
    );
    sock.release_guard();
    sock.inner.finished.send_replace(true);
}
