//! The cap on open connections (--web.max-connections), and who makes room
//! when it is reached.
//!
//! Every connection is accepted, so the listen queue never fills with
//! clients nobody will serve. When the cap is reached, the connection that
//! has waited longest for a request is closed to make room: first those that
//! never sent a byte, then those that sent part of a request, then
//! kept-alive ones between requests. A connection whose
//! request is being answered is never closed for room; when every connection
//! is being answered, the new one is closed at once. So clients that open
//! connections and send nothing cannot keep a scraper out: its connection is
//! the newest, last in line to be closed, and is busy as soon as its request
//! arrives.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

#[derive(Debug)]
pub struct Connections {
    max: usize,
    /// By age: the key counts up.
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    slots: BTreeMap<u64, Arc<State>>,
}

#[derive(Debug)]
struct State {
    /// The connection's socket, open while the slot is listed; read only to
    /// ask whether bytes wait in it.
    fd: RawFd,
    /// Requests being answered (hyper answers one at a time; pipelined
    /// requests wait).
    busy: AtomicUsize,
    /// Whether the client sent anything yet.
    heard: AtomicBool,
    /// Whether a request was ever answered here.
    served: AtomicBool,
    closing: Notify,
}

/// One admitted connection; its place is freed when it is dropped.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    state: Arc<State>,
    connections: Arc<Connections>,
}

/// Marks a connection's requests as being answered.
#[derive(Debug, Clone)]
pub struct Tracker(Arc<State>);

/// Held while a request is answered, up to its response's last byte.
#[derive(Debug)]
pub struct Busy(Arc<State>);

impl Connections {
    pub fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            open: Mutex::new(Open::default()),
        })
    }

    /// A slot for a new connection on socket `fd`, after closing the
    /// longest-waiting idle one if the cap is reached; None if every open
    /// connection is busy. Drop the slot when the socket closes.
    pub fn admit(self: &Arc<Self>, fd: RawFd) -> Option<Slot> {
        let mut open = crate::lock::unpoisoned(&self.open);
        if open.slots.len() >= self.max {
            let idle = |s: &Arc<State>| s.busy.load(Ordering::Acquire) == 0;
            // A request may wait in the socket before the connection's task
            // reads it (a scraper queued behind a flood of connections):
            // that connection has spoken.
            let silent = |s: &Arc<State>| {
                if s.heard.load(Ordering::Acquire) {
                    return false;
                }
                let waiting = bytes_waiting(s.fd);
                s.heard.store(waiting, Ordering::Release);
                !waiting
            };
            let unserved = |s: &Arc<State>| !s.served.load(Ordering::Acquire);
            let oldest = |class: &dyn Fn(&Arc<State>) -> bool| {
                open.slots
                    .iter()
                    .find(|(_, s)| idle(s) && class(s))
                    .map(|(id, _)| *id)
            };
            let victim = oldest(&silent)
                .or_else(|| oldest(&unserved))
                .or_else(|| oldest(&|_| true))?;
            if let Some(state) = open.slots.remove(&victim) {
                // Stores a permit: the connection closes even if it is not
                // waiting on it yet.
                state.closing.notify_one();
            }
        }
        let id = open.next;
        open.next += 1;
        let state = Arc::new(State {
            fd,
            busy: AtomicUsize::new(0),
            heard: AtomicBool::new(false),
            served: AtomicBool::new(false),
            closing: Notify::new(),
        });
        open.slots.insert(id, state.clone());
        Some(Slot {
            id,
            state,
            connections: self.clone(),
        })
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        crate::lock::unpoisoned(&self.open).slots.len()
    }
}

impl Slot {
    /// Completes when the connection must close to make room.
    pub async fn closing(&self) {
        self.state.closing.notified().await
    }

    /// `stream`, noting in this slot when the client first sends a byte.
    pub fn listen<S>(&self, stream: S) -> Heard<S> {
        Heard {
            inner: stream,
            state: Some(self.state.clone()),
        }
    }

    pub fn tracker(&self) -> Tracker {
        Tracker(self.state.clone())
    }
}

impl Tracker {
    /// Marks a request as being answered until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.0.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.0.clone())
    }
}

/// Whether the client's bytes wait in the socket, unread.
fn bytes_waiting(fd: RawFd) -> bool {
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int; `fd` is the slot's socket, open
    // while the slot is listed (Connections::admit).
    let result = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut waiting) };
    result == 0 && waiting > 0
}

impl Drop for Slot {
    fn drop(&mut self) {
        crate::lock::unpoisoned(&self.connections.open)
            .slots
            .remove(&self.id);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.served.store(true, Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream that marks its slot as heard from at the first byte read.
#[derive(Debug)]
pub struct Heard<S> {
    inner: S,
    /// Until the first byte.
    state: Option<Arc<State>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            if let Some(state) = self.state.take() {
                state.heard.store(true, Ordering::Release);
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn closed(slot: &Slot) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(10), slot.closing())
                .await
                .is_ok()
        })
    }

    fn hear(slot: &Slot) {
        slot.state.heard.store(true, Ordering::Release);
    }

    #[test]
    fn room_is_made_by_the_oldest_silent_then_partial_then_kept_alive() {
        let connections = Connections::new(4);
        let kept_alive = connections.admit(-1).unwrap();
        hear(&kept_alive);
        drop(kept_alive.tracker().busy()); // answered one request, now idle
        let partial = connections.admit(-1).unwrap();
        hear(&partial); // sent part of a request
        let silent_old = connections.admit(-1).unwrap();
        let silent_new = connections.admit(-1).unwrap();
        let newcomer = connections.admit(-1).unwrap();
        assert!(closed(&silent_old));
        assert!(!closed(&silent_new) && !closed(&partial) && !closed(&kept_alive));
        assert_eq!(connections.open(), 4);
        // Then the next silent one, the partial one, the kept-alive one.
        let _busy = newcomer.tracker().busy();
        let second = connections.admit(-1).unwrap();
        let _busy_too = second.tracker().busy();
        assert!(closed(&silent_new));
        let third = connections.admit(-1).unwrap();
        let _busy_three = third.tracker().busy();
        assert!(closed(&partial));
        let _fourth = connections.admit(-1).unwrap();
        assert!(closed(&kept_alive));
    }

    #[tokio::test]
    async fn the_first_byte_read_marks_the_slot() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let connections = Connections::new(1);
        let slot = connections.admit(-1).unwrap();
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut stream = slot.listen(ours);
        assert!(!slot.state.heard.load(Ordering::Acquire));
        theirs.write_all(b"G").await.unwrap();
        let mut byte = [0];
        stream.read_exact(&mut byte).await.unwrap();
        assert!(slot.state.heard.load(Ordering::Acquire));
    }

    #[test]
    fn busy_connections_are_never_closed_for_room() {
        let connections = Connections::new(2);
        let a = connections.admit(-1).unwrap();
        let b = connections.admit(-1).unwrap();
        let (_a, _b) = (a.tracker().busy(), b.tracker().busy());
        assert!(connections.admit(-1).is_none());
        assert!(!closed(&a) && !closed(&b));
        drop(_b);
        assert!(connections.admit(-1).is_some());
        assert!(closed(&b));
    }

    #[test]
    fn a_dropped_slot_frees_its_place() {
        let connections = Connections::new(1);
        let a = connections.admit(-1).unwrap();
        drop(a);
        assert_eq!(connections.open(), 0);
        let b = connections.admit(-1).unwrap();
        assert!(!closed(&b));
    }
}
