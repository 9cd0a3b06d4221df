//! HTTP/1.1 and HTTP/2 serving of a router on a listener, over TLS or plain, with the
//! [`Limits`] every connection lives under and graceful drain.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::tls::ReloadingConfig;

/// Deadlines and caps of every connection of a server. The numbers fit kube-apiserver as a
/// client: it keeps a few HTTP/2 connections per replica, sends a request as soon as it
/// connects, and sends bodies up to about 1.5 MiB (etcd's object limit).
#[derive(Debug, Clone)]
pub struct Limits {
    /// From accept to the end of the TLS handshake.
    pub handshake: Duration,
    /// From accept to the first request's headers; a connection that sends nothing is closed.
    pub first_request: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY first).
    pub idle: Duration,
    /// How long a closing connection may finish its requests before it is dropped.
    pub close_grace: Duration,
    /// Open connections. At the cap, the oldest connection that has not sent a request yet is
    /// closed to make room; when there is none, new connections wait in the listen backlog while
    /// the open ones keep being served.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams: u32,
    /// HTTP/2 flow-control windows: what a peer may send before we read it.
    pub stream_window: u32,
    pub connection_window: u32,
    /// Largest request header block (HTTP/2) and read buffer (HTTP/1.1).
    pub max_header_bytes: u32,
    /// HTTP/2 keep-alive pings, and how long an answer may take before the connection is closed.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(90),
            close_grace: Duration::from_secs(5),
            max_connections: 256,
            max_streams: 32,
            stream_window: 64 * 1024,
            connection_window: 128 * 1024,
            max_header_bytes: 64 * 1024,
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
        }
    }
}

/// The multi-threaded runtime every server runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A listener on `addr`; the error names `flag`, the setting that chose the port.
pub async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({flag})"))
}

/// Serves `router` on `listener` (over TLS when `tls` is given) with HTTP/1.1 and HTTP/2 under
/// `limits` until `shutdown` is cancelled, then lets in-flight requests finish for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadingConfig>>,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let builder = Arc::new(builder(&limits));
    let limits = Arc::new(limits);
    let open = Arc::new(OpenConnections::default());
    let tracker = TaskTracker::new();
    let local = listener.local_addr().ok();
    loop {
        tokio::select! {
            () = open.room(limits.max_connections) => {}
            () = shutdown.cancelled() => break,
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            entry: open.register(),
            router: router.clone(),
            builder: builder.clone(),
            limits: limits.clone(),
            shutdown: shutdown.clone(),
            drain,
        };
        let tls = tls.as_ref().map(|tls| TlsAcceptor::from(tls.current()));
        tracker.spawn(async move {
            let started = Instant::now();
            match tls {
                None => conn.run(stream, started).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout_at(
                        started + conn.limits.handshake,
                        acceptor.accept(stream),
                    );
                    match tokio::select! {
                        done = handshake => Some(done),
                        () = conn.entry.evicted.cancelled() => None,
                    } {
                        Some(Ok(Ok(stream))) => conn.run(stream, started).await,
                        Some(Ok(Err(err))) => log_handshake(peer, &err.to_string()),
                        Some(Err(_)) => log_handshake(peer, "timed out"),
                        None => log_handshake(peer, "evicted: too many connections"),
                    }
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    tokio::select! {
        () = tracker.wait() => tracing::debug!(address = ?local, "all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!(address = ?local, ?drain, "connections still open after the drain timeout"),
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.first_request)
        .max_buf_size(limits.max_header_bytes as usize);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .initial_stream_window_size(limits.stream_window)
        .initial_connection_window_size(limits.connection_window)
        .max_header_list_size(limits.max_header_bytes)
        .keep_alive_interval(limits.ping_interval)
        .keep_alive_timeout(limits.ping_timeout);
    builder
}

/// One accepted connection and what it needs to be served.
struct Connection {
    entry: Entry,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<Limits>,
    shutdown: CancellationToken,
    drain: Duration,
}

impl Connection {
    /// Serves the connection until the peer closes it, it is idle too long, it is evicted, or
    /// the server shuts down; closing lets in-flight requests finish within a grace period.
    async fn run<I>(self, io: I, started: Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let service = {
            let (router, activity, entry) =
                (self.router.clone(), activity.clone(), self.entry.clone());
            hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                entry.mark_used();
                let busy = activity.begin();
                let response = router.clone().oneshot(request.map(Body::new));
                async move {
                    let response = response.await;
                    drop(busy);
                    response
                }
            })
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut closing_until: Option<Instant> = None;
        loop {
            let deadline =
                closing_until.unwrap_or_else(|| activity.deadline(started, &self.limits));
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if closing_until.is_some() {
                        tracing::debug!("connection still busy after the close grace period: dropped");
                        return;
                    }
                    if activity.deadline(started, &self.limits) <= Instant::now() {
                        tracing::debug!(requests = activity.started(), "idle connection closed");
                        conn.as_mut().graceful_shutdown();
                        closing_until = Some(Instant::now() + self.limits.close_grace);
                    }
                }
                () = self.entry.evicted.cancelled(), if closing_until.is_none() => {
                    tracing::debug!("connection without a request evicted: too many connections");
                    conn.as_mut().graceful_shutdown();
                    closing_until = Some(Instant::now() + self.limits.close_grace);
                }
                () = self.shutdown.cancelled(), if closing_until.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing_until = Some(Instant::now() + self.drain);
                }
            }
        }
    }
}

/// Requests in flight on one connection and when the last one ended.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    started: AtomicUsize,
    last_end: Mutex<Option<Instant>>,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::Acquire)
    }

    /// When the connection becomes closable: the first-request deadline before any request,
    /// never while a request is in flight (its own deadlines bound it), else idle after the last.
    fn deadline(&self, accepted: Instant, limits: &Limits) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Instant::now() + limits.idle;
        }
        match *self.last_end.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(end) => end + limits.idle,
            None if self.started() == 0 => accepted + limits.first_request,
            // A request started and its end is being recorded.
            None => Instant::now() + limits.idle,
        }
    }
}

/// One request in flight; records its end when dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections of one server, oldest first, and which of them sent a request yet.
#[derive(Default)]
struct OpenConnections {
    state: Mutex<OpenState>,
    closed: Notify,
}

#[derive(Default)]
struct OpenState {
    next_id: u64,
    /// Connection id → (whether it sent a request, its eviction signal).
    open: BTreeMap<u64, (Arc<AtomicBool>, CancellationToken)>,
}

impl OpenConnections {
    /// Waits until there is room for one more connection, evicting the oldest connection that
    /// has not sent a request yet when the server is full.
    async fn room(&self, max: usize) {
        loop {
            let closed = self.closed.notified();
            {
                let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.open.len() < max {
                    return;
                }
                let unused = state.open.values().find(|(used, evicted)| {
                    !used.load(Ordering::Acquire) && !evicted.is_cancelled()
                });
                if let Some((_, evicted)) = unused {
                    evicted.cancel();
                }
            }
            closed.await;
        }
    }

    fn register(self: &Arc<Self>) -> Entry {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = state.next_id;
        state.next_id += 1;
        let (used, evicted) = (Arc::new(AtomicBool::new(false)), CancellationToken::new());
        state.open.insert(id, (used.clone(), evicted.clone()));
        Entry(Arc::new(EntryInner {
            id,
            used,
            evicted,
            open: self.clone(),
        }))
    }
}

/// A connection's place among the open ones; leaves when the last clone is dropped.
#[derive(Clone)]
struct Entry(Arc<EntryInner>);

struct EntryInner {
    id: u64,
    used: Arc<AtomicBool>,
    evicted: CancellationToken,
    open: Arc<OpenConnections>,
}

impl std::ops::Deref for Entry {
    type Target = EntryInner;
    fn deref(&self) -> &EntryInner {
        &self.0
    }
}

impl EntryInner {
    fn mark_used(&self) {
        self.used.store(true, Ordering::Release);
    }
}

impl Drop for EntryInner {
    fn drop(&mut self) {
        let mut state = self.open.state.lock().unwrap_or_else(|e| e.into_inner());
        state.open.remove(&self.id);
        drop(state);
        self.open.closed.notify_waiters();
    }
}

fn log_handshake(peer: SocketAddr, reason: &str) {
    tracing::debug!(%peer, reason, "TLS handshake failed");
}
