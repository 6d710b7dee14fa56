//! The floor: the least an RPC echo over TCP can cost with tokio.
//!
//! Frames are a 4-byte big-endian length and the payload. The server echoes every whole frame
//! it has buffered with one write, straight from its read buffer. The client keeps
//! `inflight` frames outstanding per connection: a writer task sends one frame per credit, the
//! reader task takes the answers off the wire, records their latency and hands the credits back
//! — the same pipelining the gotalk client does with its own reader and writer tasks. There is
//! no request ID, routing, result matching or allocation per message: whatever gotalk costs
//! beyond this is protocol and library overhead.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::load::{collect, payload, Control, LoadOptions, LoadResult, Tally};

const READ_CHUNK: usize = 4096;

/// Serves the floor echo on `listener` forever.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (s, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = echo_conn(s).await;
        });
    }
}

/// Length of the whole frames at the front of `buf`, and how many more bytes the next frame
/// needs beyond what is buffered.
fn whole_frames(buf: &[u8]) -> (usize, usize) {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        if rest.len() < 4 {
            return (at, 4 - rest.len());
        }
        let n = 4 + u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < n {
            return (at, n - rest.len());
        }
        at += n;
    }
}

async fn echo_conn(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = BytesMut::new();
    loop {
        let (_, need) = whole_frames(&buf);
        buf.reserve(need.max(READ_CHUNK));
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let (whole, _) = whole_frames(&buf);
        if whole > 0 {
            s.write_all(&buf[..whole]).await?;
            buf.advance(whole);
        }
    }
}

/// Runs the floor load against `addr` and returns what it measured.
pub async fn load(addr: &str, opts: &LoadOptions) -> std::io::Result<LoadResult> {
    let ctl = Arc::new(Control::default());
    let body = payload(opts.size);
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_u32(body.len() as u32);
    frame.extend_from_slice(&body);
    let frame = frame.freeze();
    let mut conns = Vec::new();
    for _ in 0..opts.conns {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        conns.push(s);
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|s| tokio::spawn(client_conn(s, opts.inflight, frame.clone(), ctl.clone())))
        .collect();
    collect("floor", opts, &ctl, tasks).await
}

async fn client_conn(
    s: TcpStream,
    inflight: usize,
    frame: Bytes,
    ctl: Arc<Control>,
) -> std::io::Result<Tally> {
    let (mut rd, mut wr) = s.into_split();
    // Credits go from the reader to the writer: one per request to send. The reader notes the
    // time it hands out each credit (the request is queued then, as when a gotalk caller calls
    // `buffer_request`); answers come back in order.
    let (credit_tx, mut credit_rx) = mpsc::unbounded_channel::<usize>();
    let expect = frame.len();
    let writer = tokio::spawn(async move {
        let mut out = BytesMut::new();
        let mut credits = Vec::new();
        while credit_rx.recv_many(&mut credits, 64).await > 0 {
            let n: usize = credits.drain(..).sum();
            if frame.len() <= READ_CHUNK {
                for _ in 0..n {
                    out.extend_from_slice(&frame);
                }
                wr.write_all(&out).await?;
                out.clear();
            } else {
                for _ in 0..n {
                    wr.write_all(&frame).await?;
                }
            }
        }
        std::io::Result::Ok(())
    });
    let mut sent = std::collections::VecDeque::with_capacity(inflight);
    sent.extend(std::iter::repeat(Instant::now()).take(inflight));
    let _ = credit_tx.send(inflight);
    let mut tally = Tally::default();
    let mut outstanding = inflight;
    let mut buf = BytesMut::new();
    while outstanding > 0 {
        let (_, need) = whole_frames(&buf);
        buf.reserve(need.max(64 * 1024));
        if rd.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let (whole, _) = whole_frames(&buf);
        let mut answers = 0;
        let mut at = 0;
        while at < whole {
            let n =
                4 + u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            if n != expect {
                tally.bad += 1;
            }
            at += n;
            answers += 1;
            let t = sent.pop_front().expect("an answer to a request never sent");
            if ctl.recording() {
                tally.hist.record(t.elapsed());
            }
        }
        buf.advance(whole);
        outstanding -= answers;
        if !ctl.stopped() && answers > 0 {
            outstanding += answers;
            sent.extend(std::iter::repeat(Instant::now()).take(answers));
            let _ = credit_tx.send(answers);
        }
    }
    drop(credit_tx);
    writer.await.expect("floor writer task")?;
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere() {
        let mut b = BytesMut::new();
        b.put_u32(3);
        b.extend_from_slice(b"abc");
        b.put_u32(0);
        assert_eq!(whole_frames(&b), (11, 4));
        assert_eq!(whole_frames(&b[..5]), (0, 2));
        assert_eq!(whole_frames(&b[..2]), (0, 2));
    }

    #[tokio::test]
    async fn floor_echo_round_trips() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(serve(l));
        let opts = LoadOptions::short(2, 4, 100);
        let r = load(&addr, &opts).await.unwrap();
        assert!(r.tally.hist.count() > 0);
        assert_eq!(r.tally.bad, 0);
    }
}
