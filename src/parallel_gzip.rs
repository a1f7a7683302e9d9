//! Gzip for /metrics, with the chunks compressed on several cores at once.
//!
//! Prometheus asks for gzip by default, and deflate at level 1 runs at about
//! 300 MB/s here: 80 ms for the 25 MB of a 100k-flow body on one core, more
//! than writing and sending the text together (BENCHMARKS.md). As pigz does,
//! each chunk becomes deflate blocks of its own, ended with a sync flush so
//! that it stops on a byte boundary; one after another, the chunks form a
//! single valid deflate stream. The writer keeps the CRC-32 and length of
//! the text in order, for the gzip trailer. A chunk does not see the text of
//! the one before, which costs about 1% of compression at 256 KiB chunks.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};
use tokio::sync::oneshot;

/// The gzip header: deflate, no name or time, unknown OS (RFC 1952).
pub const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// At most this many compressing threads, whatever the node's size: a
/// scrape should not take over a big node.
const MAX_THREADS: usize = 4;

/// The gzip stream of one body, as its writer sees it.
#[derive(Debug, Default)]
pub struct GzipState {
    crc: crc32fast::Hasher,
    len: u64,
}

impl GzipState {
    /// Counts `chunk` into the trailer and has it compressed in the
    /// background; its deflate blocks come out of the receiver.
    pub fn compress(&mut self, chunk: Bytes) -> oneshot::Receiver<Bytes> {
        self.crc.update(&chunk);
        self.len += chunk.len() as u64;
        let (done, compressed) = oneshot::channel();
        let job = Job { chunk, done };
        // The compressing threads live as long as the process; if they
        // could not start, compress here.
        match compressors() {
            Some(jobs) => {
                if let Err(job) = lock(jobs).send(job) {
                    job.0.run();
                }
            }
            None => job.run(),
        }
        compressed
    }

    /// The end of the stream: an empty last block, then the trailer.
    pub fn finish(self) -> Bytes {
        let mut end = Vec::with_capacity(10);
        // BFINAL=1, fixed Huffman codes, end-of-block: 10 bits.
        end.extend_from_slice(&[0x03, 0x00]);
        end.extend_from_slice(&self.crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        end.extend_from_slice(&(self.len as u32).to_le_bytes());
        Bytes::from(end)
    }
}

struct Job {
    chunk: Bytes,
    done: oneshot::Sender<Bytes>,
}

impl Job {
    fn run(self) {
        // The body may be gone (the client left): nothing to do then.
        if self.done.is_closed() {
            return;
        }
        let _ = self.done.send(Bytes::from(deflate_blocks(&self.chunk)));
    }
}

/// `text` as deflate blocks, none of them the last one, ending on a byte
/// boundary (a sync flush).
pub fn deflate_blocks(text: &[u8]) -> Vec<u8> {
    let mut deflate = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(text.len() / 4 + 64);
    loop {
        let read = deflate.total_in() as usize;
        let status = deflate
            .compress_vec(&text[read..], &mut out, FlushCompress::Sync)
            .expect("deflate into memory cannot fail");
        // Done when all input is in and the flush had room to complete.
        let flushed = out.len() < out.capacity();
        if deflate.total_in() as usize == text.len() && flushed && status == Status::Ok {
            return out;
        }
        out.reserve(out.capacity().max(4096));
    }
}

/// Where jobs go: threads started on first use, one per core the process
/// may use (cgroup limits included), at most [`MAX_THREADS`].
fn compressors() -> Option<&'static Mutex<Sender<Job>>> {
    static JOBS: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS);
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut started = 0;
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || compress_from(&queue));
            started += usize::from(spawned.is_ok());
        }
        (started > 0).then(|| Mutex::new(jobs))
    })
    .as_ref()
}

fn compress_from(queue: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the queue only to take one job, not while compressing it.
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match job {
            Ok(job) => job.run(),
            Err(_) => return,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn separately_compressed_chunks_form_one_gzip_stream() {
        let text: Vec<u8> = (0..200_000)
            .flat_map(|i| format!("series{{n=\"{i}\"}} {}\n", i * 7).into_bytes())
            .collect();
        let mut state = GzipState::default();
        let pending: Vec<_> = text
            .chunks(100_000)
            .map(|c| state.compress(Bytes::copy_from_slice(c)))
            .collect();
        let mut gz = HEADER.to_vec();
        for p in pending {
            gz.extend_from_slice(&p.blocking_recv().unwrap());
        }
        gz.extend_from_slice(&state.finish());
        assert_eq!(gunzip(&gz), text);
        assert!(gz.len() < text.len() / 4, "{} of {}", gz.len(), text.len());
    }

    #[test]
    fn empty_text_is_an_empty_gzip_stream() {
        let mut gz = HEADER.to_vec();
        gz.extend_from_slice(&GzipState::default().finish());
        assert_eq!(gunzip(&gz), b"");
    }

    #[test]
    fn incompressible_text_grows_the_output_until_it_fits() {
        // Pseudo-random bytes: deflate's output is bigger than its input.
        let mut x = 1u64;
        let text: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut state = GzipState::default();
        let blocks = state.compress(Bytes::from(text.clone()));
        let mut gz = HEADER.to_vec();
        gz.extend_from_slice(&blocks.blocking_recv().unwrap());
        gz.extend_from_slice(&state.finish());
        assert_eq!(gunzip(&gz), text);
    }
}
