//! The server's threads and the state they share: one accept thread that
//! can close its listener and re-bind the same port (an API server restart),
//! and one thread per connection. Everything sits behind one mutex; the
//! condvar wakes watch streams on every change.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::handlers::handle_connection;
use super::store::Store;

pub struct Shared {
    pub state: Mutex<State>,
    pub changed: Condvar,
}

#[derive(Default)]
pub struct State {
    pub store: Store,
    /// `GET /api/v1/pods?&limit=2 200`, one line per request, and whether
    /// it asked for metadata only.
    pub log: Vec<(String, bool)>,
    /// Path prefixes answered with 403.
    pub forbidden: Vec<String>,
    pub open_watches: usize,
    /// Every open connection, to shut down on a restart or at the end.
    connections: HashMap<u64, TcpStream>,
    next_connection: u64,
    /// Moves on whenever connections are dropped: a watch stream started
    /// under an older generation ends at once.
    pub generation: u64,
    want_listening: bool,
    listening: bool,
    bind_error: Option<String>,
    pub stopped: bool,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            state: Mutex::new(State {
                want_listening: true,
                listening: true,
                ..State::default()
            }),
            changed: Condvar::new(),
        }
    }

    /// The state, even after a panicking test thread poisoned the lock: the
    /// server must still shut down cleanly then.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits (at most `timeout`) until `done` holds; returns whether it did.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while !done(&state) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        true
    }

    /// Closes the listener and every open connection; new connections are
    /// refused until `listen_again`.
    pub fn go_down(&self, addr: SocketAddr) {
        {
            let mut state = self.lock();
            state.want_listening = false;
            state.drop_connections();
            self.changed.notify_all();
        }
        // The accept thread sits in accept(): a connection wakes it to
        // notice. Refused is fine: then it is not listening any more.
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        let closed = self.wait_until(Duration::from_secs(5), |s| !s.listening);
        assert!(
            closed,
            "test API server: the listener did not close within 5 s"
        );
    }

    pub fn listen_again(&self) {
        self.lock().want_listening = true;
        self.changed.notify_all();
        let mut bind_error = None;
        let up = self.wait_until(Duration::from_secs(5), |s| {
            bind_error.clone_from(&s.bind_error);
            s.listening || s.bind_error.is_some()
        });
        if let Some(error) = bind_error {
            panic!("test API server: {error}");
        }
        assert!(up, "test API server: not listening again within 5 s");
    }

    /// Ends every thread: the accept thread (woken through `addr`) and every
    /// connection (shut down, so a blocked read or write returns).
    pub fn stop(&self, addr: SocketAddr) {
        let listening = {
            let mut state = self.lock();
            state.stopped = true;
            state.want_listening = false;
            state.drop_connections();
            self.changed.notify_all();
            state.listening
        };
        if listening {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
    }
}

impl State {
    fn drop_connections(&mut self) {
        self.generation += 1;
        for (_, connection) in self.connections.drain() {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

/// The accept thread: serves `listener` until told to go down, then waits
/// to be told to listen again and re-binds the same address.
pub fn accept_loop(shared: Arc<Shared>, mut listener: TcpListener, addr: SocketAddr) {
    loop {
        accept_until_down(&shared, &listener);
        drop(listener);
        let mut state = shared.lock();
        state.listening = false;
        shared.changed.notify_all();
        while !state.want_listening && !state.stopped {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.stopped {
            return;
        }
        drop(state);
        let bound = bind_again(addr);
        let mut state = shared.lock();
        match bound {
            Ok(bound) => {
                listener = bound;
                state.listening = true;
                shared.changed.notify_all();
            }
            Err(error) => {
                state.bind_error = Some(format!("cannot listen on {addr} again: {error}"));
                shared.changed.notify_all();
                return;
            }
        }
    }
}

fn accept_until_down(shared: &Arc<Shared>, listener: &TcpListener) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // Out of descriptors or similar: do not spin on it.
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                let state = shared.lock();
                if state.stopped || !state.want_listening {
                    return;
                }
                continue;
            }
        };
        let mut state = shared.lock();
        if state.stopped || !state.want_listening {
            return;
        }
        let Ok(registered) = stream.try_clone() else {
            continue;
        };
        let id = state.next_connection;
        state.next_connection += 1;
        state.connections.insert(id, registered);
        let generation = state.generation;
        drop(state);
        let shared = Arc::clone(shared);
        thread::spawn(move || {
            handle_connection(&shared, &stream, generation);
            shared.lock().connections.remove(&id);
        });
    }
}

/// std sets SO_REUSEADDR on its listeners, so the port is free again at
/// once despite the old connections in TIME_WAIT; the retries only cover
/// another process taking the port in between, which then fails clearly.
fn bind_again(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(error) if tries >= 20 => return Err(error),
            Err(_) => {
                tries += 1;
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
