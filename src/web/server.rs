//! The accept loop and each connection's life: the cap on connections, TLS,
//! the header and write timeouts, and hyper.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::LazyConfigAcceptor;
use tracing::{debug, warn};

use super::connections::{Busy, Connections, Slot, Tracker};
use super::stall::Stall;
use super::tls::Tls;
use super::{handle, AppState};

/// How long open connections may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The limits each connection is held to (README, "Securing the endpoint").
#[derive(Debug, Clone)]
pub struct Limits {
    /// For the TLS handshake and each request's head, the first one and
    /// each next one on a kept-alive connection.
    pub read_header_timeout: Duration,
    /// The request line and headers together.
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// How long a write may wait for the client to read.
    pub write_timeout: Duration,
}

/// Serves until `shutdown` completes, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: Limits,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let connections = Connections::new(limits.max_connections);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Every open connection is answering a request: no room.
                    let Some(slot) = connections.admit(stream.as_raw_fd()) else {
                        debug!("refused a connection: every connection is busy");
                        continue;
                    };
                    let serving = connection(stream, state.clone(), limits.clone(), tls.clone(), slot, graceful.watcher());
                    tokio::spawn(serving);
                }
                Err(e) => {
                    // Usually EMFILE; back off instead of spinning.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("open HTTP connections did not finish within {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// One connection, until it ends, fails a limit, or must make room.
async fn connection(
    stream: TcpStream,
    state: Arc<AppState>,
    limits: Limits,
    tls: Option<Arc<Tls>>,
    slot: Slot,
    watcher: Watcher,
) {
    let stream = slot.listen(Stall::new(stream, limits.write_timeout));
    let tracker = slot.tracker();
    let served = async move {
        match tls {
            None => http(stream, state, &limits, tracker, watcher).await,
            Some(tls) => {
                let handshake = async {
                    let start = LazyConfigAcceptor::new(Default::default(), stream).await?;
                    start.into_stream(tls.config()).await
                };
                match tokio::time::timeout(limits.read_header_timeout, handshake).await {
                    Ok(Ok(stream)) => http(stream, state, &limits, tracker, watcher).await,
                    Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                    Err(_) => debug!("TLS handshake timed out"),
                }
            }
        }
    };
    tokio::pin!(served);
    tokio::select! {
        () = &mut served => {}
        () = slot.closing() => debug!("closed an idle connection to make room for a new one"),
    }
    // Off the list in the same poll that closed the socket: the runtime has
    // one thread, so no accept can reuse the fd number while it is listed
    // (and the worst a reused one could do is misjudge one eviction).
    drop(slot);
}

async fn http<I>(io: I, state: Arc<AppState>, limits: &Limits, tracker: Tracker, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(|req| {
        let busy = tracker.busy();
        let state = state.clone();
        async move {
            let mut response = handle(state, req).await?;
            let permit = response.extensions_mut().remove::<ScrapePermit>();
            Ok::<_, std::convert::Infallible>(response.map(|body| Tracked {
                body,
                _busy: busy,
                _permit: permit,
            }))
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout)
        .max_header_size(limits.max_header_bytes)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// A /metrics response's place among the bodies in flight; handed from the
/// handler to [`Tracked`] in the response's extensions.
#[derive(Clone, Debug)]
pub struct ScrapePermit(#[allow(dead_code)] pub Arc<OwnedSemaphorePermit>);

/// A response body that keeps its connection busy (never closed to make
/// room) and its scrape's place until its last byte is written or the
/// connection ends.
struct Tracked<B> {
    body: B,
    _busy: Busy,
    _permit: Option<ScrapePermit>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
