//! The two adapters that let a [`Sock`](crate::Sock) run over a WebSocket unchanged.
//!
//! - [`WsWriter`] is an `AsyncWrite` that cuts the outgoing byte stream at gotalk message
//!   boundaries (with the pure [`parse_header`]) and sends the version, every header and every
//!   non-empty payload as its own binary WebSocket message, as the reference server does and as
//!   the reference `gotalk.js` needs when it reads.
//! - [`WsReader`] is an `AsyncRead` that joins the payloads of incoming WebSocket messages (binary
//!   or text) into one byte stream, so whatever framing a peer chooses (a header split over two
//!   messages, several gotalk messages in one) decodes the same.
//!
//! Both halves share a [`CloseCode`]: the writer records `4000 + code` when it sees a protocol
//! error go out, the reader records 1009 when a peer's message is over the size limit and 1007
//! when a text message is not UTF-8, and the writer sends that code in the closing handshake.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::frame::MsgType;
use crate::header::parse_header;

/// WebSocket close code of a normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code for a text message that is not valid UTF-8 (RFC 6455: invalid
/// payload data).
pub const CLOSE_INVALID_TEXT: u16 = 1007;
/// WebSocket close code for a message over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close codes `4000 + n` report gotalk protocol error `n` (as the reference does).
pub const CLOSE_PROTOCOL_ERROR_BASE: u16 = 4000;

/// What an incoming WebSocket message means to the reader.
#[derive(Debug)]
pub(crate) enum Event {
    /// Bytes of the gotalk stream (from a binary or a text message).
    Data(Bytes),
    /// The peer started the closing handshake.
    Close,
    /// A control message the WebSocket library answers itself (ping, pong).
    Skip,
    /// The peer's message was larger than the limit.
    TooBig(String),
    /// The peer's text message was not valid UTF-8.
    InvalidText(String),
}

/// The WebSocket message types of the libraries we adapt (axum's and tungstenite's).
pub(crate) trait WsMessage: Sized + Send + 'static {
    /// A binary message.
    fn binary(data: Bytes) -> Self;
    /// A close message with a status code and a short reason.
    fn close(code: u16, reason: &'static str) -> Self;
    /// What the reader makes of this message.
    fn event(self) -> Event;
}

/// The close code the writer sends when the connection ends; shared by both halves.
#[derive(Debug, Clone, Default)]
pub(crate) struct CloseCode(Arc<AtomicU16>);

impl CloseCode {
    /// Records `code` unless another one was recorded first.
    pub(crate) fn set(&self, code: u16) {
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The code recorded, or 1000 (normal closure).
    pub(crate) fn get(&self) -> u16 {
        match self.0.load(Ordering::Acquire) {
            0 => CLOSE_NORMAL,
            c => c,
        }
    }
}

/// The short text sent with a close code.
fn close_reason(code: u16) -> &'static str {
    match code {
        CLOSE_NORMAL => "",
        CLOSE_TOO_BIG => "message too big",
        CLOSE_INVALID_TEXT => "text message is not UTF-8",
        4000 => "gotalk protocol error 0 (abnormal)",
        4001 => "gotalk protocol error 1 (unsupported protocol)",
        4002 => "gotalk protocol error 2 (invalid message)",
        4003 => "gotalk protocol error 3 (timeout)",
        _ => "gotalk protocol error",
    }
}

// ---- reading ------------------------------------------------------------------------------

/// An `AsyncRead` over a stream of WebSocket messages: the data of every message, in order.
///
/// One read hands over as many messages as are ready and fit, not one message per read: the
/// reference sends every header and every payload as a message of its own, so a read per
/// message would cost the connection's reader a wake-up for every half gotalk message.
pub(crate) struct WsReader<S> {
    stream: S,
    /// What is left of the current message.
    chunk: Bytes,
    close: CloseCode,
    eof: bool,
    /// An error met after a read had already taken some bytes; the next read reports it.
    error: Option<io::Error>,
}

impl<S> WsReader<S> {
    pub(crate) fn new(stream: S, close: CloseCode) -> WsReader<S> {
        WsReader {
            stream,
            chunk: Bytes::new(),
            close,
            eof: false,
            error: None,
        }
    }
}

impl<S> AsyncRead for WsReader<S>
where
    S: Stream<Item = io::Result<Event>> + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let start = buf.filled().len();
        loop {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if !this.chunk.is_empty() {
                let n = this.chunk.len().min(buf.remaining());
                buf.put_slice(&this.chunk[..n]);
                if n == this.chunk.len() {
                    // Let go of the message as soon as it is copied: it shares the WebSocket
                    // library's read buffer, which can then be reused in place for the next
                    // message instead of reallocated (a fresh allocation, and fresh pages, for
                    // every large message).
                    this.chunk = Bytes::new();
                } else {
                    this.chunk.advance(n);
                }
                continue;
            }
            let copied = buf.filled().len() > start;
            if copied && (this.eof || this.error.is_some()) {
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = this.error.take() {
                return Poll::Ready(Err(e));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let next = match Pin::new(&mut this.stream).poll_next(cx) {
                Poll::Ready(next) => next,
                // Hand over what we have; the waker stays registered for what comes next.
                Poll::Pending if copied => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            };
            match next {
                None | Some(Ok(Event::Close)) => this.eof = true,
                Some(Ok(Event::Data(b))) => this.chunk = b,
                Some(Ok(Event::Skip)) => {}
                Some(Ok(Event::TooBig(what))) => {
                    this.close.set(CLOSE_TOO_BIG);
                    this.error = Some(io::Error::new(io::ErrorKind::InvalidData, what));
                }
                Some(Ok(Event::InvalidText(what))) => {
                    this.close.set(CLOSE_INVALID_TEXT);
                    this.error = Some(io::Error::new(io::ErrorKind::InvalidData, what));
                }
                Some(Err(e)) => this.error = Some(e),
            }
        }
    }
}

// ---- writing ------------------------------------------------------------------------------

/// Where the writer is in the outgoing byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The two-digit protocol version comes first.
    Version,
    /// A message header.
    Header,
    /// This many payload bytes.
    Payload(usize),
}

/// An `AsyncWrite` that sends the version, each header and each non-empty payload written to
/// it as separate binary WebSocket messages.
pub(crate) struct WsWriter<S, M> {
    sink: S,
    /// Bytes written but not yet cut into a whole unit.
    buf: BytesMut,
    cut: Cut,
    /// Whole units waiting for the sink.
    ready: VecDeque<Bytes>,
    close: CloseCode,
    close_sent: bool,
    _msg: PhantomData<fn(M)>,
}

impl<S, M> WsWriter<S, M> {
    pub(crate) fn new(sink: S, close: CloseCode) -> WsWriter<S, M> {
        WsWriter {
            sink,
            buf: BytesMut::new(),
            cut: Cut::Version,
            ready: VecDeque::new(),
            close,
            close_sent: false,
            _msg: PhantomData,
        }
    }

    /// Moves every whole unit at the front of `buf` to `ready`.
    fn cut_units(&mut self) -> io::Result<()> {
        loop {
            match self.cut {
                Cut::Version => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    self.ready.push_back(self.buf.split_to(2).freeze());
                    self.cut = Cut::Header;
                }
                Cut::Header => {
                    let h = match parse_header(&self.buf) {
                        Ok(Some(h)) => h,
                        Ok(None) => return Ok(()),
                        Err(e) => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("outgoing bytes are not a gotalk message: {}", e.reason),
                            ))
                        }
                    };
                    if h.msg_type == MsgType::ProtocolError {
                        let code = h.wait.min(999) as u16;
                        self.close.set(CLOSE_PROTOCOL_ERROR_BASE + code);
                    }
                    self.ready.push_back(self.buf.split_to(h.len).freeze());
                    let n = h.payload_len();
                    if n > 0 {
                        self.cut = Cut::Payload(n);
                    }
                }
                Cut::Payload(n) => {
                    if self.buf.len() < n {
                        // Room for the rest of the payload in one allocation.
                        self.buf.reserve(n - self.buf.len());
                        return Ok(());
                    }
                    self.ready.push_back(self.buf.split_to(n).freeze());
                    self.cut = Cut::Header;
                }
            }
        }
    }
}

fn sink_err<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> io::Error {
    io::Error::other(e)
}

impl<S, M> WsWriter<S, M>
where
    S: Sink<M> + Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    M: WsMessage,
{
    /// Hands every ready unit to the sink.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.ready.is_empty() {
            ready!(Pin::new(&mut self.sink).poll_ready(cx)).map_err(sink_err)?;
            let unit = self.ready.pop_front().expect("not empty");
            Pin::new(&mut self.sink)
                .start_send(M::binary(unit))
                .map_err(sink_err)?;
        }
        Poll::Ready(Ok(()))
    }

    fn accept(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        // Back-pressure: take new bytes only once the sink has taken the earlier units.
        ready!(self.poll_push(cx))?;
        let mut n = 0;
        for b in bufs {
            self.buf.extend_from_slice(b);
            n += b.len();
        }
        self.cut_units()?;
        // Start handing the new units over now; whatever the sink does not take yet waits for
        // the next write or flush.
        if let Poll::Ready(Err(e)) = self.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }
}

impl<S, M> AsyncWrite for WsWriter<S, M>
where
    S: Sink<M> + Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    M: WsMessage,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.accept(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.accept(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_push(cx))?;
        Pin::new(&mut self.sink).poll_flush(cx).map_err(sink_err)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        if !self.close_sent {
            // The peer may have closed first; the closing handshake is then already done.
            let this = &mut *self;
            if ready!(Pin::new(&mut this.sink).poll_ready(cx)).is_ok() {
                let code = this.close.get();
                let _ = Pin::new(&mut this.sink).start_send(M::close(code, close_reason(code)));
            }
            this.close_sent = true;
        }
        let _ = ready!(Pin::new(&mut self.sink).poll_close(cx));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    /// A sink that records what it is given.
    #[derive(Default)]
    struct Record(Vec<Bytes>);

    #[derive(Debug, PartialEq)]
    enum Out {
        Bin(Bytes),
        Close(u16),
    }

    impl WsMessage for Out {
        fn binary(data: Bytes) -> Out {
            Out::Bin(data)
        }
        fn close(code: u16, _reason: &'static str) -> Out {
            Out::Close(code)
        }
        fn event(self) -> Event {
            match self {
                Out::Bin(b) => Event::Data(b),
                Out::Close(_) => Event::Close,
            }
        }
    }

    impl Sink<Out> for Record {
        type Error = io::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(mut self: Pin<&mut Self>, item: Out) -> io::Result<()> {
            match item {
                Out::Bin(b) => self.0.push(b),
                Out::Close(c) => self.0.push(Bytes::from(format!("close {c}"))),
            }
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write_in_pieces(input: &[u8], piece: usize) -> Vec<Bytes> {
        let close = CloseCode::default();
        let mut w: WsWriter<Record, Out> = WsWriter::new(Record::default(), close);
        let mut cx = Context::from_waker(noop_waker_ref());
        for p in input.chunks(piece) {
            match Pin::new(&mut w).poll_write(&mut cx, p) {
                Poll::Ready(Ok(n)) => assert_eq!(n, p.len()),
                other => panic!("write: {other:?}"),
            }
        }
        assert!(Pin::new(&mut w).poll_shutdown(&mut cx).is_ready());
        w.sink.0
    }

    #[test]
    fn cuts_version_headers_and_payloads_apart_whatever_the_write_sizes() {
        let input =
            b"01r0001004echo00000005hellon003foo00000000h00016b069c5eR000100000000E000200000002nof00000002";
        let want: Vec<&[u8]> = vec![
            b"01",
            b"r0001004echo00000005",
            b"hello",
            b"n003foo00000000",
            b"h00016b069c5e",
            b"R000100000000",
            b"E000200000002",
            b"no",
            b"f00000002",
            b"close 4002",
        ];
        for piece in [1, 2, 3, 7, 13, input.len()] {
            let got = write_in_pieces(input, piece);
            assert_eq!(got, want, "piece size {piece}");
        }
    }

    #[test]
    fn protocol_error_sets_the_close_code() {
        let got = write_in_pieces(b"01f00000002", 4);
        assert_eq!(
            got,
            vec![
                Bytes::from_static(b"01"),
                Bytes::from_static(b"f00000002"),
                Bytes::from("close 4002")
            ]
        );
        let got = write_in_pieces(b"01h00000000000", 5);
        assert_eq!(got.last().unwrap(), &Bytes::from("close 1000"));
    }

    #[test]
    fn garbage_is_refused() {
        let mut w: WsWriter<Record, Out> = WsWriter::new(Record::default(), CloseCode::default());
        let mut cx = Context::from_waker(noop_waker_ref());
        match Pin::new(&mut w).poll_write(&mut cx, b"01zzz") {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn reader_joins_messages_into_one_stream() {
        let events = vec![
            Ok(Event::Data(Bytes::from_static(b"01r00"))),
            Ok(Event::Skip),
            Ok(Event::Data(Bytes::from_static(b"01004echo0000000"))),
            Ok(Event::Data(Bytes::from_static(b"5hello"))),
            Ok(Event::Close),
            Ok(Event::Data(Bytes::from_static(b"after close"))),
        ];
        let mut r = WsReader::new(futures_util::stream::iter(events), CloseCode::default());
        let mut out = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            use tokio::io::AsyncReadExt;
            r.read_to_end(&mut out).await.unwrap();
        });
        assert_eq!(out, b"01r0001004echo00000005hello");
    }

    #[test]
    fn reader_reports_too_big() {
        let close = CloseCode::default();
        let events = vec![Ok(Event::TooBig("too big".into()))];
        let mut r = WsReader::new(futures_util::stream::iter(events), close.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(async {
            use tokio::io::AsyncReadExt;
            let mut out = Vec::new();
            r.read_to_end(&mut out).await.unwrap_err()
        });
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(close.get(), CLOSE_TOO_BIG);
    }

    #[test]
    fn reader_reports_invalid_text() {
        let close = CloseCode::default();
        let events = vec![Ok(Event::InvalidText("not UTF-8".into()))];
        let mut r = WsReader::new(futures_util::stream::iter(events), close.clone());
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut space = [0u8; 8];
        let mut buf = ReadBuf::new(&mut space);
        assert!(matches!(
            Pin::new(&mut r).poll_read(&mut cx, &mut buf),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::InvalidData
        ));
        assert_eq!(close.get(), CLOSE_INVALID_TEXT);
    }

    /// One `poll_read` with a buffer of `cap` bytes.
    fn read_once<S>(r: &mut WsReader<S>, cap: usize) -> Poll<io::Result<Vec<u8>>>
    where
        S: Stream<Item = io::Result<Event>> + Unpin,
    {
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut space = vec![0u8; cap];
        let mut buf = ReadBuf::new(&mut space);
        Pin::new(r)
            .poll_read(&mut cx, &mut buf)
            .map_ok(|()| buf.filled().to_vec())
    }

    #[test]
    fn one_read_takes_every_ready_message_that_fits() {
        let data = |b: &'static [u8]| Ok(Event::Data(Bytes::from_static(b)));
        let events = vec![
            data(b"01"),
            data(b"r0001004echo00000005"),
            Ok(Event::Skip),
            data(b"hello"),
        ];
        // Then nothing more for now: the stream is pending.
        let stream = futures_util::StreamExt::chain(
            futures_util::stream::iter(events),
            futures_util::stream::pending(),
        );
        let mut r = WsReader::new(stream, CloseCode::default());
        match read_once(&mut r, 64) {
            Poll::Ready(Ok(got)) => assert_eq!(got, b"01r0001004echo00000005hello"),
            other => panic!("read: {other:?}"),
        }
        assert!(read_once(&mut r, 64).is_pending());

        // A small buffer takes what fits; the rest waits for the next read.
        let events = vec![data(b"01r000"), data(b"1004echo00000005hello")];
        let mut r = WsReader::new(futures_util::stream::iter(events), CloseCode::default());
        let mut got = Vec::new();
        for want in [&b"01r0001"[..], b"004echo", b"0000000", b"5hello", b""] {
            match read_once(&mut r, 7) {
                Poll::Ready(Ok(b)) => assert_eq!(b, want),
                other => panic!("read: {other:?}"),
            }
            got.extend_from_slice(want);
        }
        assert_eq!(got, b"01r0001004echo00000005hello");
    }

    #[test]
    fn an_error_after_data_comes_with_the_next_read() {
        let close = CloseCode::default();
        let events = vec![
            Ok(Event::Data(Bytes::from_static(b"01"))),
            Ok(Event::TooBig("too big".into())),
            Ok(Event::Data(Bytes::from_static(b"never read"))),
        ];
        let mut r = WsReader::new(futures_util::stream::iter(events), close.clone());
        match read_once(&mut r, 64) {
            Poll::Ready(Ok(got)) => assert_eq!(got, b"01"),
            other => panic!("read: {other:?}"),
        }
        assert_eq!(close.get(), CLOSE_TOO_BIG);
        match read_once(&mut r, 64) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            other => panic!("read: {other:?}"),
        }

        let events = vec![
            Ok(Event::Data(Bytes::from_static(b"01"))),
            Err(io::Error::from(io::ErrorKind::ConnectionReset)),
        ];
        let mut r = WsReader::new(futures_util::stream::iter(events), CloseCode::default());
        assert!(matches!(read_once(&mut r, 64), Poll::Ready(Ok(b)) if b == b"01"));
        assert!(
            matches!(read_once(&mut r, 64), Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset)
        );
    }
}
