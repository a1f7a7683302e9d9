//! /metrics bodies written and sent chunk by chunk, from buffers kept warm
//! between scrapes.
//!
//! A body is about 250 bytes per flow: 25 MB at 100k flows. Written whole
//! and then sent, the two add up; here hyper sends each chunk while the next
//! is written (the response is chunked). The chunks are views into one
//! buffer (`BytesMut::split`), and the next scrape takes that buffer back
//! once hyper has dropped them all (`BytesMut::reserve` reclaims a buffer it
//! owns alone), so it writes into memory already mapped: a fresh 25 MB
//! buffer costs one page fault per 4 KiB, 21 ms on the benchmark VM, about as
//! long as writing the text (BENCHMARKS.md).
//!
//! Gzip, which Prometheus asks for by default, runs at about 450 MB/s per
//! core at level 1: 55 ms for a 100k-flow body on one core, more than writing
//! and sending the text together. gzp compresses the chunks on several cores
//! at once, as pigz does (32-37 ms on the 2-vCPU benchmark VM).

use std::fmt;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use gzp::deflate::Gzip;
use gzp::par::compress::{Compression, ParCompress, ParCompressBuilder};
use gzp::ZWriter;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Plain text goes out in chunks of about this size, cut at line ends. 1
/// MiB chunks took a 100k-flow scrape (31.8 MB, curl) from a median of 26.2
/// to 23.8 ms against 256 KiB ones, and 64 KiB ones were no better than 256
/// KiB (three runs each, 2026-12-03, BENCHMARKS.md): fewer hand-overs to
/// hyper and fewer, larger writes to the socket.
pub const CHUNK: usize = 1024 * 1024;

/// Text to be compressed goes to gzp in chunks of this size, the size of the
/// blocks it compresses several at once: the first block starts as soon as
/// it is written.
pub const GZIP_BLOCK: usize = 256 * 1024;

/// At most this many compressing threads, whatever the node's size: a
/// scrape should not take over a big node.
const MAX_GZIP_THREADS: usize = 4;

/// The buffer the last body was written into, for the next one.
#[derive(Debug, Default)]
pub struct WarmBuffers {
    text: Mutex<Warm>,
}

/// What the body's channel carries, in the body's order.
#[derive(Debug)]
enum Piece {
    Data(Bytes),
    End,
}

/// Whether the text is compressed on its way to the body.
enum Compressing {
    Off,
    /// gzp's threads compress the chunks and send them to the body.
    On(ParCompress<'static, Gzip, BodySink>),
    /// Compressing failed: the body must not end as if it were complete.
    Failed,
}

#[derive(Debug, Default)]
struct Warm {
    /// What is left of the last body's buffer, after its last chunk.
    buffer: BytesMut,
    /// Bytes that buffer's memory holds, at least.
    size: usize,
    /// Bytes of the last body.
    last_len: usize,
}

impl WarmBuffers {
    /// A writer for a body of about `estimate` bytes of text, compressed
    /// with gzip if `gzip`, and the response body its chunks feed.
    pub fn writer(&self, estimate: usize, gzip: bool) -> (ChunkedText, ChunkedBody) {
        let (sink, chunks) = unbounded_channel();
        let text = lock(&self.text).take(estimate);
        let compressing = match gzip {
            true => Compressing::On(gzip_compressor(BodySink(sink.clone()))),
            false => Compressing::Off,
        };
        let writer = ChunkedText {
            chunk: if gzip { GZIP_BLOCK } else { CHUNK },
            current: text,
            written: 0,
            kept: Vec::new(),
            keeping: false,
            gzip: compressing,
            sink,
        };
        (writer, ChunkedBody { pieces: chunks })
    }

    /// Sends what `writer` has left and keeps its buffers for the next body.
    pub fn finish(&self, mut writer: ChunkedText) {
        writer.flush();
        writer.kept.clear();
        let complete = match std::mem::replace(&mut writer.gzip, Compressing::Off) {
            Compressing::Off => true,
            // Waits for the last compressed block and the trailer.
            Compressing::On(mut gzip) => gzip.finish().is_ok(),
            Compressing::Failed => false,
        };
        lock(&self.text).keep(std::mem::take(&mut writer.current), writer.written);
        if complete {
            let _ = writer.sink.send(Piece::End);
        }
    }
}

/// Threads that compress one gzip body: as many as the cores the process
/// may use (cgroup limits included), at most [`MAX_GZIP_THREADS`].
pub fn gzip_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_GZIP_THREADS)
}

/// A gzip stream of the text written into it, compressed on
/// [`gzip_threads`] cores and written to `sink` block by block in order
/// (public for the benchmark that compares it with one core).
pub fn gzip_compressor<W: io::Write + Send + 'static>(sink: W) -> ParCompress<'static, Gzip, W> {
    ParCompressBuilder::<Gzip>::new()
        .compression_level(Compression::fast())
        .num_threads(gzip_threads())
        .expect("at least one thread")
        .buffer_size(GZIP_BLOCK)
        .expect("a chunk holds gzp's 32 KiB dictionary")
        .from_writer(sink)
}

/// Where gzp's writing thread puts the compressed stream: the body.
struct BodySink(UnboundedSender<Piece>);

impl io::Write for BodySink {
    fn write(&mut self, compressed: &[u8]) -> io::Result<usize> {
        // An error stops gzp's threads: the client left.
        self.0
            .send(Piece::Data(Bytes::copy_from_slice(compressed)))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(compressed.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Warm {
    /// A buffer with room for `estimate` bytes, or for the last body and
    /// an eighth more if that was bigger: the same memory if every chunk
    /// of the last body is gone and it is not far too big.
    fn take(&mut self, estimate: usize) -> BytesMut {
        let estimate = estimate.max(self.last_len + self.last_len / 8);
        let mut buffer = std::mem::take(&mut self.buffer);
        // A table that got much smaller does not keep its old size in memory.
        if !buffer.try_reclaim(estimate) || self.size > estimate * 2 + CHUNK {
            buffer = BytesMut::with_capacity(estimate);
            self.size = estimate;
        }
        buffer
    }

    /// Keeps the rest of a body's buffer; the body was `len` bytes.
    fn keep(&mut self, rest: BytesMut, len: usize) {
        self.buffer = rest;
        self.last_len = len;
        // Writing past the buffer's room moves the rest into a bigger one.
        self.size = self.size.max(len);
    }
}

fn lock(slot: &Mutex<Warm>) -> std::sync::MutexGuard<'_, Warm> {
    // A buffer stays valid between statements, whatever panicked.
    crate::lock::unpoisoned(slot)
}

fn send(sink: &UnboundedSender<Piece>, chunk: Bytes) {
    // The client may have gone: the rest of the body is then dropped.
    let _ = sink.send(Piece::Data(chunk));
}

/// Where a piece of text was written, to copy it again later
/// ([`ChunkedText::copy`]).
#[derive(Clone, Copy, Debug)]
pub struct Span {
    chunk: u32,
    start: u32,
    end: u32,
}

impl Span {
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Text written into a warm buffer and handed to hyper in chunks.
pub struct ChunkedText {
    /// Bytes of text at which a chunk is sent: [`CHUNK`] or [`GZIP_BLOCK`].
    chunk: usize,
    /// The chunk being written; its spare room is the rest of the buffer.
    current: BytesMut,
    /// Bytes of text sent so far.
    written: usize,
    /// Chunks already sent, while [`ChunkedText::keep_chunks`] is on.
    kept: Vec<Bytes>,
    keeping: bool,
    gzip: Compressing,
    sink: UnboundedSender<Piece>,
}

impl Drop for ChunkedText {
    fn drop(&mut self) {
        // Dropped without `WarmBuffers::finish` (the writer panicked): stop
        // gzp's threads here, since its own drop panics if the client has
        // left. The body still fails, as no `Piece::End` follows.
        if let Compressing::On(mut gzip) = std::mem::replace(&mut self.gzip, Compressing::Off) {
            let _ = gzip.finish();
        }
    }
}

impl ChunkedText {
    pub fn push_str(&mut self, text: &str) {
        self.current.extend_from_slice(text.as_bytes());
    }

    /// Text as bytes: the caller's to keep it UTF-8.
    pub fn push_bytes(&mut self, text: &[u8]) {
        self.current.extend_from_slice(text);
    }

    /// Call at the end of each line: sends the text so far once it fills a
    /// chunk.
    pub fn line_end(&mut self) {
        if self.current.len() >= self.chunk {
            self.flush();
        }
    }

    /// Keeps the chunks sent from now on, so that [`ChunkedText::copy`] can
    /// read them, until [`ChunkedText::drop_kept`].
    pub fn keep_chunks(&mut self) {
        self.keeping = true;
    }

    /// Sends the text so far and lets go of the kept chunks.
    pub fn drop_kept(&mut self) {
        self.flush();
        self.keeping = false;
        self.kept.clear();
    }

    /// Where the text written between `mark()` and `span_from()` is.
    pub fn mark(&self) -> usize {
        self.current.len()
    }

    pub fn span_from(&self, start: usize) -> Span {
        Span {
            chunk: self.kept.len() as u32,
            start: start as u32,
            end: self.current.len() as u32,
        }
    }

    /// Writes again text written earlier, in a chunk kept since then; the
    /// span's chunk must have been sent (a line end, or [`Self::flush`]).
    pub fn copy(&mut self, span: Span) {
        let chunk = &self.kept[span.chunk as usize];
        self.current
            .extend_from_slice(&chunk[span.start as usize..span.end as usize]);
    }

    /// Sends everything written so far.
    pub fn flush(&mut self) {
        if self.current.is_empty() {
            return;
        }
        let chunk = self.current.split().freeze();
        self.written += chunk.len();
        if self.keeping {
            self.kept.push(chunk.clone());
        }
        if self.sink.is_closed() {
            // The client left (a scrape timeout, say): compressing the rest
            // would only load a node that is already slow to answer.
            return;
        }
        match &mut self.gzip {
            Compressing::Off => send(&self.sink, chunk),
            Compressing::On(gzip) => {
                // gzp copies the chunk, so the buffer is free for the next
                // scrape as soon as the text is written.
                if gzip.write_all(&chunk).is_err() {
                    self.gzip = Compressing::Failed;
                }
            }
            Compressing::Failed => {}
        }
    }
}

impl fmt::Write for ChunkedText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push_str(text);
        Ok(())
    }
}

/// A response body fed by a [`ChunkedText`].
#[derive(Debug)]
pub struct ChunkedBody {
    pieces: UnboundedReceiver<Piece>,
}

impl ChunkedBody {
    /// The whole body, once its writer finished; `None` if it has not (for
    /// tests and benchmarks, which write and read on one thread).
    pub fn written(mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.pieces.try_recv().ok()? {
                Piece::Data(chunk) => out.extend_from_slice(&chunk),
                Piece::End => return Some(out),
            }
        }
    }
}

/// The writer stopped before the end of the body (it panicked, or gzip
/// failed): hyper then aborts the response instead of ending it as if it
/// were complete.
#[derive(Debug)]
pub struct Unfinished;

impl fmt::Display for Unfinished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the body's writer stopped before its end")
    }
}

impl std::error::Error for Unfinished {}

impl Body for ChunkedBody {
    type Data = Bytes;
    type Error = Unfinished;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Unfinished>>> {
        Poll::Ready(match std::task::ready!(self.pieces.poll_recv(cx)) {
            Some(Piece::Data(chunk)) => Some(Ok(Frame::data(chunk))),
            Some(Piece::End) => None,
            None => Some(Err(Unfinished)),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
