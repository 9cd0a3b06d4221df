//! Keeps the index current, as an informer does: a metadata-only list at `resourceVersion=0`
//! (served from the API server's watch cache in one response), each page parsed as it streams in,
//! then a watch from the list's resourceVersion, resumed where it stopped, relisting only when the
//! API server no longer has that version.
//!
//! With 100 000 ServiceAccounts this costs kube-apiserver a third of the CPU of a streaming watch
//! list (`sendInitialEvents`) in JSON, and us less than half: see bench/README.md.

use std::io::{self, BufReader, Read};
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, StreamExt};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Resource;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::core::Request;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::list::{Listed, Page, read_page};
use super::{Index, Store, insert};
use crate::serving::errors::chain;

/// Items per page when the API server pages the list: it does not while its watch cache is ready
/// (a `resourceVersion=0` list is answered whole from the cache), only right after it starts.
const LIST_PAGE_SIZE: u32 = 500;

/// Longest time one list page may take to arrive and be read.
const PAGE_DEADLINE: Duration = Duration::from_secs(300);

/// Bytes read from the API server at a time while parsing a page.
const READ_BUFFER: usize = 64 * 1024;

/// A watch that ends sooner than this without an event is retried with backoff, not at once, so
/// a proxy that closes every watch cannot make us spin.
const SHORTEST_WATCH: Duration = Duration::from_secs(1);

/// Why a list failed.
#[derive(Debug, thiserror::Error)]
enum ListError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("cannot read the list: {0}")]
    Read(#[from] serde_json::Error),
    #[error("the list parser stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How a watch ended.
enum Watched {
    /// The API server closed it (its timeout): resume from this resourceVersion.
    Closed { quiet: bool },
    /// The resourceVersion is no longer available (410 Gone): relist.
    Gone,
    /// It failed: resume from the last resourceVersion after a backoff.
    Failed(String),
}

/// Runs forever: lists, then watches, recording failures for `/readyz` and retrying with backoff.
pub(super) async fn run(index: Index, client: kube::Client) {
    let api: Api<ServiceAccount> = Api::all(client.clone());
    let mut backoff = Backoff::default();
    let mut version: Option<String> = None;
    loop {
        let mut resource_version = match version.take() {
            Some(rv) => rv,
            None => match list(&index, &client).await {
                Ok(rv) => {
                    backoff.reset();
                    rv
                }
                Err(err) => {
                    index.watch_failed(format!("list failed: {}", chain(&err)));
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            },
        };
        match watch(&index, &api, &mut resource_version).await {
            Watched::Closed { quiet: false } => backoff.reset(),
            Watched::Closed { quiet: true } => {
                tracing::debug!("the ServiceAccount watch closed at once; resuming after a pause");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Watched::Gone => {
                tracing::info!(
                    %resource_version,
                    "the API server no longer has the ServiceAccount watch's resourceVersion; relisting"
                );
                continue;
            }
            Watched::Failed(error) => {
                index.watch_failed(format!("watch failed: {error}"));
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
        version = Some(resource_version);
    }
}

/// Lists every ServiceAccount into a new store, swapped in whole once the list is complete (so
/// entries deleted meanwhile disappear and the index never looks half-empty); returns the
/// resourceVersion to watch from.
async fn list(index: &Index, client: &kube::Client) -> Result<String, ListError> {
    let path = ServiceAccount::url_path(&(), None);
    let mut continue_token: Option<String> = None;
    let mut store = Store::new();
    loop {
        let params = match &continue_token {
            Some(token) => ListParams::default()
                .limit(LIST_PAGE_SIZE)
                .continue_token(token),
            None => ListParams::default(),
        };
        let mut request = Request::new(&path)
            .list_metadata(&params)
            .map_err(kube::Error::BuildRequest)?;
        if continue_token.is_none() {
            // What client-go's reflector asks: kube-core drops `resourceVersion=0` when a limit
            // is set, and without it the list is a consistent read in pages of 500 (200 requests
            // and six times the API server's CPU for 100 000 ServiceAccounts).
            *request.uri_mut() = format!("{path}?resourceVersion=0&limit={LIST_PAGE_SIZE}")
                .parse()
                .expect("a constant path and query");
        }
        let body = Box::pin(client.request_stream(request).await?);
        let (page, filled) = read_in_background(index.clone(), body, store).await??;
        store = filled;
        continue_token = page.continue_token;
        if continue_token.is_none() {
            index.replace(store);
            return Ok(page.resource_version);
        }
    }
}

/// Parses one page on a blocking thread (the JSON parser reads synchronously) while the runtime
/// keeps receiving it; items go straight into `store`.
async fn read_in_background(
    index: Index,
    body: impl AsyncRead + Unpin + Send + 'static,
    mut store: Store,
) -> Result<serde_json::Result<(Page, Store)>, tokio::task::JoinError> {
    let reader = Blocking {
        body,
        runtime: Handle::current(),
        deadline: Instant::now() + PAGE_DEADLINE,
    };
    tokio::task::spawn_blocking(move || {
        let mut each = |listed: Listed| {
            if let (Some(namespace), Some(name)) = (&listed.namespace, &listed.name) {
                let annotations = index.annotations_of(listed.annotations.as_ref());
                insert(&mut store, namespace, name, annotations);
            }
        };
        let page = read_page(BufReader::with_capacity(READ_BUFFER, reader), &mut each)?;
        Ok((page, store))
    })
    .await
}

/// An async body read synchronously from a blocking thread, within a deadline.
struct Blocking<R> {
    body: R,
    runtime: Handle,
    deadline: Instant,
}

impl<R: AsyncRead + Unpin> Read for Blocking<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = self.deadline;
        let read = async { tokio::time::timeout_at(deadline, self.body.read(buf)).await };
        self.runtime.block_on(read).unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the page did not arrive within {}",
                    humantime::format_duration(PAGE_DEADLINE)
                ),
            ))
        })
    }
}

/// Applies watch events from `resource_version` until the watch ends; `resource_version`
/// follows every event and bookmark, so the next watch resumes where this one stopped.
async fn watch(index: &Index, api: &Api<ServiceAccount>, resource_version: &mut String) -> Watched {
    let started = Instant::now();
    let events = match api
        .watch_metadata(&WatchParams::default(), resource_version)
        .await
    {
        Ok(events) => events,
        Err(kube::Error::Api(status)) if status.code == 410 => return Watched::Gone,
        Err(err) => return Watched::Failed(chain(&err)),
    };
    index.watch_healthy();
    let mut events = std::pin::pin!(events);
    let mut seen = 0usize;
    while let Some(event) = events.next().await {
        seen += 1;
        let (sa, deleted) = match event {
            Ok(WatchEvent::Added(sa) | WatchEvent::Modified(sa)) => (sa, false),
            Ok(WatchEvent::Deleted(sa)) => (sa, true),
            Ok(WatchEvent::Bookmark(bookmark)) => {
                *resource_version = bookmark.metadata.resource_version;
                continue;
            }
            Ok(WatchEvent::Error(status)) if status.code == 410 => return Watched::Gone,
            Ok(WatchEvent::Error(status)) => {
                return Watched::Failed(format!("{} ({})", status.message, status.code));
            }
            Err(err) => return Watched::Failed(chain(&err)),
        };
        let meta = &sa.metadata;
        if let Some(rv) = &meta.resource_version {
            resource_version.clone_from(rv);
        }
        let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) else {
            continue;
        };
        if deleted {
            index.remove(namespace, name);
        } else {
            let annotations = index.annotations_of(meta.annotations.as_ref());
            index.insert(namespace, name, annotations);
        }
    }
    Watched::Closed {
        quiet: seen == 0 && started.elapsed() < SHORTEST_WATCH,
    }
}

/// Retry delays: doubling from 0.8 s to at most 30 s, each with up to 50 % random jitter added
/// (so replicas that lost the API server together do not come back in step).
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

const FIRST_DELAY: Duration = Duration::from_millis(800);
const LONGEST_DELAY: Duration = Duration::from_secs(30);

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let base = FIRST_DELAY
            .saturating_mul(1 << self.failures.min(16))
            .min(LONGEST_DELAY);
        self.failures = self.failures.saturating_add(1);
        base.mul_f64(1.0 + fastrand::f64() / 2.0)
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        let bases = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0, 30.0];
        for (delay, base) in delays.iter().zip(bases) {
            let secs = delay.as_secs_f64();
            assert!(
                (base..=base * 1.5).contains(&secs),
                "{secs} s outside {base} s + 50 %: {delays:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST_DELAY.mul_f64(1.5));
    }

    #[test]
    fn a_blocking_reader_reads_an_async_body_and_honours_its_deadline() {
        // As in `serve`: a handle's `block_on` needs worker threads to drive the timers.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let mut reader = Blocking {
            body: futures::io::Cursor::new(b"{\"items\":[]}".to_vec()),
            runtime: runtime.handle().clone(),
            deadline: Instant::now() + Duration::from_secs(5),
        };
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"items\":[]}");

        let never = futures::stream::pending::<io::Result<Vec<u8>>>();
        let mut stalled = Blocking {
            body: futures::TryStreamExt::into_async_read(never),
            runtime: runtime.handle().clone(),
            deadline: Instant::now() + Duration::from_millis(50),
        };
        let err = stalled.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }
}
