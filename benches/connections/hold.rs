//! Holding many open loopback connections. One process may have 20,000
//! open files here, and that limit cannot be raised, so the connections
//! live in child processes: this bench binary again, run with `--hold`.
//! Each child holds both ends of up to `PER_CHILD` connections to a
//! listener of its own, so every (source, destination, port) tuple carries
//! few enough connections for the default ephemeral port range.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Two files per connection, well under the 20,000 open files per process.
pub const PER_CHILD: usize = 9_000;

/// The `--hold <count>` mode: opens `count` connections, each moving one
/// byte each way, prints `ready <port>`, and holds them idle until its
/// stdin closes (the bench exits or dies).
pub fn serve(count: usize) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and changes
    // only this process. If the bench dies, the kernel kills this child.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: getppid has no preconditions; 1 means the bench already died.
    if unsafe { libc::getppid() } == 1 {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
    let target = listener.local_addr().unwrap();
    let mut held = Vec::with_capacity(2 * count);
    let mut byte = [7u8];
    for _ in 0..count {
        let mut client = TcpStream::connect(target).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        // One byte each way, so every connection has moved something the
        // exporter must count exactly: 1 sent and 1 received per end.
        client.write_all(&byte).unwrap();
        server.read_exact(&mut byte).unwrap();
        server.write_all(&byte).unwrap();
        client.read_exact(&mut byte).unwrap();
        held.push(client);
        held.push(server);
    }
    println!("ready {}", target.port());
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// The children holding the connections; killed and reaped when dropped,
/// on a panic too.
pub struct Holders {
    children: Vec<Child>,
    /// Each child's listener and how many connections it holds.
    pub listeners: Vec<(SocketAddr, usize)>,
    /// From the first spawn until every child held all its connections.
    pub opening: Duration,
}

impl Holders {
    /// Opens `total` connections, `PER_CHILD` per child, all children at
    /// once, and waits until each says it holds all of its own.
    pub fn open(total: usize) -> Holders {
        let me = std::env::current_exe().expect("the bench binary");
        let started = Instant::now();
        let mut holders = Holders {
            children: Vec::new(),
            listeners: Vec::new(),
            opening: Duration::ZERO,
        };
        let counts: Vec<usize> = (0..total)
            .step_by(PER_CHILD)
            .map(|first| PER_CHILD.min(total - first))
            .collect();
        for &count in &counts {
            let child = Command::new(&me)
                .args(["--hold", &count.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a holder");
            holders.children.push(child);
        }
        for (child, count) in holders.children.iter_mut().zip(counts) {
            let mut line = String::new();
            let stdout = child.stdout.as_mut().unwrap();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            let port: u16 = line
                .strip_prefix("ready ")
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("a holder failed to open {count} connections"));
            holders
                .listeners
                .push((SocketAddr::from(([127, 0, 0, 1], port)), count));
        }
        holders.opening = started.elapsed();
        holders
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}
