//! HTTP/1.1 and HTTP/2 serving of a router on a listener, over TLS or plain, with the
//! [`Limits`] every connection lives under and a shutdown no client notices ([`Shutdown`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
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

use super::shutdown::Shutdown;
use super::tls::ReloadingConfig;

/// Deadlines and caps of every connection of a server. The numbers fit kube-apiserver as a
/// client: it keeps HTTP/1.1 keep-alive connections to a webhook named by a Service (HTTP/2
/// only to a loopback URL), sends a request as soon as it connects, and sends bodies up to
/// about 1.5 MiB (etcd's object limit).
#[derive(Debug, Clone)]
pub struct Limits {
    /// From accept to the end of the TLS handshake.
    pub handshake: Duration,
    /// From accept to the first request's headers; a connection that sends nothing is closed.
    pub first_request: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY first).
    /// Longer than any client keeps an idle connection (Go's, kube-apiserver's, 90 s), so the
    /// client always closes first: an HTTP/1.1 connection closed by the server as the client
    /// reuses it loses that request, and Go does not retry a POST.
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
            idle: Duration::from_secs(120),
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
/// `limits`, through the phases of `shutdown`: while draining every answer asks its client to
/// move on (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY) and new connections are still
/// accepted; once closing the listener is dropped and open connections finish; once stopped
/// whatever is still open is dropped. Returns when every connection has ended or at `stopped`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadingConfig>>,
    router: Router,
    limits: Limits,
    shutdown: Shutdown,
) {
    let builder = Arc::new(builder(&limits));
    let limits = Arc::new(limits);
    let open = Arc::new(OpenConnections::default());
    let drain = Arc::new(DrainCounts::default());
    let tracker = TaskTracker::new();
    let local = listener.local_addr().ok();
    loop {
        tokio::select! {
            () = open.room(limits.max_connections) => {}
            () = shutdown.closing.cancelled() => break,
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
            () = shutdown.closing.cancelled() => break,
        };
        if let Some(after) = shutdown.since_began() {
            drain.accepted(after);
        }
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            entry: open.register(),
            router: router.clone(),
            builder: builder.clone(),
            limits: limits.clone(),
            shutdown: shutdown.clone(),
            drain: drain.clone(),
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
                        () = conn.shutdown.stopped.cancelled() => None,
                    } {
                        Some(Ok(Ok(stream))) => conn.run(stream, started).await,
                        Some(Ok(Err(err))) => log_handshake(peer, &err.to_string()),
                        Some(Err(_)) => log_handshake(peer, "timed out"),
                        None => log_handshake(peer, "evicted or stopped"),
                    }
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    let dropped = tokio::select! {
        () = tracker.wait() => 0,
        () = shutdown.stopped.cancelled() => open.len(),
    };
    if shutdown.since_began().is_some() {
        drain.report(local, dropped);
    }
}

/// What happened to one listener after the shutdown began, logged when it ends: how long new
/// connections kept coming (what `--shutdown-delay` must cover) and what was still open at the
/// end of the drain.
#[derive(Default)]
struct DrainCounts {
    accepted: AtomicUsize,
    last_accept: Mutex<Option<Duration>>,
    answered: AtomicUsize,
}

impl DrainCounts {
    fn accepted(&self, after: Duration) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        *self.last_accept.lock().unwrap_or_else(|e| e.into_inner()) = Some(after);
    }

    fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, address: Option<SocketAddr>, dropped: usize) {
        let last = *self.last_accept.lock().unwrap_or_else(|e| e.into_inner());
        let last_ms = last.map(|d| d.as_millis() as u64);
        let (accepted, answered) = (
            self.accepted.load(Ordering::Relaxed),
            self.answered.load(Ordering::Relaxed),
        );
        if dropped > 0 {
            tracing::warn!(address = ?address, accepted, last_accept_ms = last_ms, answered, dropped, "drain timeout: connections still open were dropped (raise --shutdown-timeout if this repeats)");
        } else {
            tracing::info!(address = ?address, accepted, last_accept_ms = last_ms, answered, "drained: every connection closed");
        }
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
    shutdown: Shutdown,
    drain: Arc<DrainCounts>,
}

/// Whether, and until when, a connection is being closed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    No,
    /// Asked to close (idle, evicted): dropped at this instant if it has not ended.
    Until(Instant),
    /// GOAWAY sent for the shutdown: it ends by itself or is dropped when the drain ends.
    AtStop,
}

impl Connection {
    /// Serves the connection until the peer closes it, it is idle too long, it is evicted, or
    /// the drain ends. An idle connection is only ever closed after longer than any client
    /// keeps one idle; during the shutdown, HTTP/1.1 answers carry `Connection: close` and an
    /// HTTP/2 connection gets GOAWAY, so no request is ever sent on a connection we close.
    async fn run<I>(self, io: I, started: Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let service = {
            let (router, activity, entry) =
                (self.router.clone(), activity.clone(), self.entry.clone());
            let (draining, drain) = (self.shutdown.draining.clone(), self.drain.clone());
            hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                entry.mark_used();
                let http1 = request.version() < Version::HTTP_2;
                let busy = activity.begin(!http1);
                let response = router.clone().oneshot(request.map(Body::new));
                let (draining, drain) = (draining.clone(), drain.clone());
                async move {
                    let mut response = response.await;
                    if draining.is_cancelled() {
                        drain.answered();
                        if let (true, Ok(response)) = (http1, &mut response) {
                            response
                                .headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                    }
                    drop(busy);
                    response
                }
            })
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut closing = Closing::No;
        loop {
            let draining = self.shutdown.draining.is_cancelled();
            if draining && closing == Closing::No && activity.http2() {
                // GOAWAY (twice, with a PING between, so streams racing it are still served).
                conn.as_mut().graceful_shutdown();
                closing = Closing::AtStop;
            }
            let deadline = match closing {
                Closing::No => Some(activity.deadline(started, &self.limits)),
                Closing::Until(at) => Some(at),
                Closing::AtStop => None,
            };
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                    return;
                }
                () = sleep_until_some(deadline) => {
                    if closing != Closing::No {
                        tracing::debug!("connection still busy after the close grace period: dropped");
                        return;
                    }
                    if activity.deadline(started, &self.limits) <= Instant::now() {
                        tracing::debug!(requests = activity.started(), "idle connection closed");
                        conn.as_mut().graceful_shutdown();
                        closing = Closing::Until(Instant::now() + self.limits.close_grace);
                    }
                }
                () = self.entry.evicted.cancelled(), if closing == Closing::No => {
                    tracing::debug!("connection without a request evicted: too many connections");
                    conn.as_mut().graceful_shutdown();
                    closing = Closing::Until(Instant::now() + self.limits.close_grace);
                }
                // Look again: an HTTP/2 connection gets its GOAWAY.
                () = self.shutdown.draining.cancelled(), if !draining => {}
                () = activity.changed.notified(), if draining && closing == Closing::No => {}
                () = self.shutdown.stopped.cancelled() => return,
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Requests in flight on one connection and when the last one ended.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    started: AtomicUsize,
    last_end: Mutex<Option<Instant>>,
    /// Whether the requests come over HTTP/2 (known from the first one).
    http2: AtomicBool,
    /// Signalled when a request begins.
    changed: Notify,
}

impl Activity {
    fn begin(self: &Arc<Self>, http2: bool) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        if http2 {
            self.http2.store(true, Ordering::Release);
        }
        self.changed.notify_one();
        Busy(self.clone())
    }

    fn http2(&self) -> bool {
        self.http2.load(Ordering::Acquire)
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

    /// How many connections are open.
    fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .len()
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
