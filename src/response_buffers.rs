//! Response buffers kept warm between scrapes.
//!
//! A /metrics body is about 250 bytes per flow: 25 MB at 100k flows. A
//! fresh buffer that size is a fresh mapping, and touching it for the first
//! time costs one page fault per 4 KiB: 21 ms for 25 MB on the benchmark VM,
//! as long as writing the text itself (BENCHMARKS.md). So each body is handed
//! to hyper as a [`Bytes`] that owns its buffer and gives it back here once
//! the response is sent; the next scrape writes into memory already mapped.
//! A buffer much bigger than what it last held shrinks to that, so a table
//! that got smaller does not keep its old size in memory.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// At most this many idle buffers: a text body and its gzip copy, for two
/// scrapes at once. More concurrent scrapes allocate, as without the pool.
const KEPT: usize = 4;

/// Room a buffer may keep beyond what it last held before it is shrunk: a
/// quarter more (what the next, slightly bigger estimate may ask for) and 1 MiB.
fn too_big(capacity: usize, held: usize) -> bool {
    capacity > held + held / 4 + (1 << 20)
}

#[derive(Debug, Default)]
pub struct ResponseBuffers {
    idle: Mutex<Vec<Vec<u8>>>,
}

impl ResponseBuffers {
    /// An empty buffer with room for at least `capacity` bytes: the
    /// smallest idle one that fits, else the biggest grown to fit.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut idle = self.lock();
        let fitting = idle
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= capacity)
            .min_by_key(|(_, b)| b.capacity())
            .or_else(|| idle.iter().enumerate().max_by_key(|(_, b)| b.capacity()))
            .map(|(i, _)| i);
        let mut buffer = fitting.map(|i| idle.swap_remove(i)).unwrap_or_default();
        drop(idle);
        buffer.reserve(capacity);
        buffer
    }

    /// [`ResponseBuffers::take`], as a String to write text into.
    pub fn take_string(&self, capacity: usize) -> String {
        String::from_utf8(self.take(capacity)).expect("an empty buffer is valid UTF-8")
    }

    /// `buffer` as a response body that comes back here when hyper drops it.
    pub fn body(self: &Arc<Self>, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Returning {
            buffer,
            home: self.clone(),
        })
    }

    /// Keeps `buffer` for the next scrape, shrunk to what it held.
    pub fn give_back(&self, mut buffer: Vec<u8>) {
        let held = buffer.len();
        buffer.clear();
        if too_big(buffer.capacity(), held) {
            buffer.shrink_to(held);
        }
        let mut idle = self.lock();
        idle.push(buffer);
        if idle.len() > KEPT {
            let smallest = (0..idle.len())
                .min_by_key(|&i| idle[i].capacity())
                .expect("not empty");
            idle.swap_remove(smallest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // The list holds plain buffers that stay valid between statements.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A body's buffer on its way back to [`ResponseBuffers`].
struct Returning {
    buffer: Vec<u8>,
    home: Arc<ResponseBuffers>,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_body_comes_back_with_its_memory() {
        let buffers = Arc::new(ResponseBuffers::default());
        let mut buffer = buffers.take(3 << 20);
        buffer.extend_from_slice(&[b'x'; 3 << 20]);
        let address = buffer.as_ptr();
        let body = buffers.body(buffer);
        assert_eq!(body.len(), 3 << 20);
        drop(body);
        let again = buffers.take(1 << 20);
        assert_eq!((again.as_ptr(), again.len()), (address, 0));
        assert!(again.capacity() >= 3 << 20);
    }

    #[test]
    fn each_request_takes_the_smallest_buffer_that_fits() {
        let buffers = ResponseBuffers::default();
        for size in [8 << 20, 1 << 20, 4 << 20] {
            buffers.give_back(vec![0; size]);
        }
        assert!(buffers.take(2 << 20).capacity() < 8 << 20);
        assert!(buffers.take(100).capacity() < 4 << 20);
        // Nothing fits: the biggest grows.
        assert!(buffers.take(9 << 20).capacity() >= 9 << 20);
        assert!(buffers.lock().is_empty());
    }

    #[test]
    fn a_buffer_shrinks_to_what_it_last_held_and_few_are_kept() {
        let buffers = ResponseBuffers::default();
        let mut big = Vec::with_capacity(16 << 20);
        big.resize(1000, 0);
        buffers.give_back(big);
        assert!(buffers.take(0).capacity() < 2 << 20);
        for _ in 0..KEPT + 3 {
            buffers.give_back(vec![0; 10]);
        }
        assert_eq!(buffers.lock().len(), KEPT);
    }
}
