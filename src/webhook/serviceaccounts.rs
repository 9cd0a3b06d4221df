//! The ServiceAccount index: which ServiceAccounts exist and the role annotations of those that
//! have one, kept current by a cluster-wide metadata-only watch, with one shared, time-bounded
//! API GET per ServiceAccount that is not (yet) in the index.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};

use crate::injection::config::InjectionConfig;
use crate::injection::identity::SaAnnotations;
use crate::injection::manifest::ServiceAccountEntry;
use crate::serving::errors::chain;
use crate::serving::health::Readiness;
use crate::serving::kube_client::Cluster;
use crate::webhook::metrics::Metrics;

/// Most ServiceAccount GETs in flight at once; beyond it a miss is answered "unavailable" at
/// once, so a flood of pods naming unknown ServiceAccounts cannot pile up API requests.
pub const MAX_FLIGHTS: usize = 64;

/// What the index knows about one ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// It exists; `None` when it has no role annotation.
    Found(Option<Arc<SaAnnotations>>),
    /// It does not exist.
    NotFound,
    /// It could not be looked up; the reason is for the user.
    Unavailable(String),
}

/// namespace → name → annotations (only for annotated ServiceAccounts).
type Store = HashMap<Box<str>, HashMap<Box<str>, Option<Arc<SaAnnotations>>>>;

type Flight = Shared<BoxFuture<'static, Lookup>>;

/// Shared handle to the index.
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

struct Inner {
    store: RwLock<Store>,
    ready: AtomicBool,
    watch: Mutex<WatchHealth>,
    cfg: Arc<InjectionConfig>,
    metrics: Arc<Metrics>,
    /// `None` for a static index loaded from a file.
    api: Option<ApiFallback>,
}

struct ApiFallback {
    client: kube::Client,
    /// The API server's URL, for messages.
    url: String,
    timeout: Duration,
    flights: Mutex<HashMap<(String, String), Flight>>,
}

impl Index {
    /// A static, immediately ready index (from `--service-accounts-file`); misses are not found.
    pub fn from_entries(
        entries: Vec<ServiceAccountEntry>,
        cfg: Arc<InjectionConfig>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut store = Store::new();
        for e in entries {
            store
                .entry(e.namespace.into())
                .or_default()
                .insert(e.name.into(), e.annotations.map(Arc::new));
        }
        let index = Self::new(store, cfg, metrics, None);
        index.publish_counts(&index.read());
        index.inner.ready.store(true, Ordering::Release);
        index
    }

    /// An index fed by a cluster-wide metadata watch; not ready until the first list completes.
    /// The returned future runs the watch forever (it retries with backoff) and must be spawned.
    pub fn watch(
        cluster: Cluster,
        lookup_timeout: Duration,
        cfg: Arc<InjectionConfig>,
        metrics: Arc<Metrics>,
    ) -> (Self, BoxFuture<'static, ()>) {
        let client = cluster.client.clone();
        let fallback = ApiFallback {
            client: cluster.client,
            url: cluster.url,
            timeout: lookup_timeout,
            flights: Mutex::default(),
        };
        let index = Self::new(Store::new(), cfg, metrics, Some(fallback));
        let task = index.clone().run_watch(Api::all(client)).boxed();
        (index, task)
    }

    fn new(
        store: Store,
        cfg: Arc<InjectionConfig>,
        metrics: Arc<Metrics>,
        api: Option<ApiFallback>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: RwLock::new(store),
                ready: AtomicBool::new(false),
                watch: Mutex::default(),
                cfg,
                metrics,
                api,
            }),
        }
    }

    /// True once a complete list has been loaded; stays true across relists.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// For `/readyz`: not ready before the first complete list; afterwards ready, with a note
    /// while the watch is failing (the index may then miss changes; lookups of ServiceAccounts
    /// it lacks still ask the API server).
    pub fn readiness(&self) -> Readiness {
        if !self.is_ready() {
            return Err(self.watch_health().note(Instant::now()).map_or_else(
                || "ServiceAccount index not synced yet".to_owned(),
                |note| format!("ServiceAccount index not synced yet: {note}"),
            ));
        }
        Ok(self
            .watch_health()
            .note(Instant::now())
            .into_iter()
            .collect())
    }

    fn watch_health(&self) -> std::sync::MutexGuard<'_, WatchHealth> {
        self.inner.watch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks a ServiceAccount up, asking the API server (once for all concurrent askers, bounded
    /// in time) when the index does not know it.
    pub async fn lookup(&self, namespace: &str, name: &str) -> Lookup {
        if let Some(known) = self.lookup_cached(namespace, name) {
            return known;
        }
        let Some(api) = &self.inner.api else {
            return Lookup::NotFound; // lookup_cached has answered and counted it
        };
        let flight = {
            let mut flights = api.flights.lock().unwrap_or_else(|e| e.into_inner());
            let key = (namespace.to_owned(), name.to_owned());
            if !flights.contains_key(&key) && flights.len() >= MAX_FLIGHTS {
                self.inner.metrics.lookup("api_error");
                return Lookup::Unavailable(format!(
                    "{MAX_FLIGHTS} other ServiceAccount lookups are in flight"
                ));
            }
            flights
                .entry(key)
                .or_insert_with(|| self.start_flight(api, namespace, name))
                .clone()
        };
        flight.await
    }

    /// The answer without waiting, when the index has it (or there is no API server to ask);
    /// `None` when [`Index::lookup`] would ask the API server.
    pub fn lookup_cached(&self, namespace: &str, name: &str) -> Option<Lookup> {
        if let Some(found) = self.cached(namespace, name) {
            self.inner.metrics.lookup("cache");
            return Some(Lookup::Found(found));
        }
        if self.inner.api.is_none() {
            self.inner.metrics.lookup("not_found");
            return Some(Lookup::NotFound);
        }
        None
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<Option<Arc<SaAnnotations>>> {
        self.read().get(namespace)?.get(name).cloned()
    }

    /// Spawns the GET so it completes (and fills the index) even if every asker gives up.
    fn start_flight(&self, api: &ApiFallback, namespace: &str, name: &str) -> Flight {
        let index = self.clone();
        let sas: Api<PartialObjectMeta<ServiceAccount>> =
            Api::namespaced(api.client.clone(), namespace);
        let (namespace, name, timeout) = (namespace.to_owned(), name.to_owned(), api.timeout);
        let api_url = api.url.clone();
        let task = tokio::spawn(async move {
            let result = tokio::time::timeout(timeout, sas.get_opt(&name)).await;
            let lookup = match result {
                Ok(Ok(Some(sa))) => {
                    index.inner.metrics.lookup("api_found");
                    let annotations = index.annotations_of(&sa);
                    index.insert(&namespace, &name, annotations.clone());
                    Lookup::Found(annotations)
                }
                Ok(Ok(None)) => {
                    index.inner.metrics.lookup("api_not_found");
                    Lookup::NotFound
                }
                Ok(Err(err)) => {
                    index.inner.metrics.lookup("api_error");
                    let error = chain(&err);
                    tracing::warn!(%namespace, %name, api_server = %api_url, %error, "ServiceAccount GET failed");
                    Lookup::Unavailable(format!("API error: {}", chain(&err)))
                }
                Err(_) => {
                    index.inner.metrics.lookup("api_error");
                    tracing::warn!(%namespace, %name, ?timeout, "ServiceAccount GET timed out");
                    Lookup::Unavailable(format!(
                        "API server did not answer within {}",
                        humantime::format_duration(timeout)
                    ))
                }
            };
            if let Some(api) = &index.inner.api {
                let mut flights = api.flights.lock().unwrap_or_else(|e| e.into_inner());
                flights.remove(&(namespace, name));
            }
            lookup
        });
        task.map(|joined| {
            joined.unwrap_or_else(|e| Lookup::Unavailable(format!("lookup task failed: {e}")))
        })
        .boxed()
        .shared()
    }

    fn annotations_of(&self, sa: &PartialObjectMeta<ServiceAccount>) -> Option<Arc<SaAnnotations>> {
        let annotations = sa.metadata.annotations.as_ref()?;
        let pairs = annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        SaAnnotations::from_annotations(&self.inner.cfg, pairs).map(Arc::new)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.inner.store.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.inner.store.write().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, namespace: &str, name: &str, annotations: Option<Arc<SaAnnotations>>) {
        let added = Some(has_role(&annotations));
        let replaced = insert(&mut self.write(), namespace, name, annotations);
        self.count_change(replaced.map(|a| has_role(&a)), added);
    }

    fn remove(&self, namespace: &str, name: &str) {
        let mut store = self.write();
        let Some(names) = store.get_mut(namespace) else {
            return;
        };
        let removed = names.remove(name);
        if names.is_empty() {
            store.remove(namespace);
        }
        drop(store);
        self.count_change(removed.map(|a| has_role(&a)), None);
    }

    /// Adjusts the gauges for one entry going from `before` to `after` (`Some(annotated)`).
    fn count_change(&self, before: Option<bool>, after: Option<bool>) {
        let weight = |entry: Option<bool>| match entry {
            None => (0, 0),
            Some(annotated) => (1, i64::from(annotated)),
        };
        let ((all_before, annotated_before), (all_after, annotated_after)) =
            (weight(before), weight(after));
        self.inner
            .metrics
            .service_accounts
            .inc_by(all_after - all_before);
        self.inner
            .metrics
            .annotated_service_accounts
            .inc_by(annotated_after - annotated_before);
    }

    /// Sets the gauges from a whole store (after a complete list).
    fn publish_counts(&self, store: &Store) {
        let (all, annotated) = store
            .values()
            .flat_map(HashMap::values)
            .fold((0i64, 0i64), |(all, annotated), a| {
                (all + 1, annotated + i64::from(has_role(a)))
            });
        self.inner.metrics.service_accounts.set(all);
        self.inner.metrics.annotated_service_accounts.set(annotated);
    }

    async fn run_watch(self, api: Api<PartialObjectMeta<ServiceAccount>>) {
        // Streaming lists send the initial state as watch events: with 100 000 ServiceAccounts
        // a real kube-apiserver 1.34 got us ready in 1.3-1.6 s at a 29-32 MiB peak, against
        // 3.4-3.9 s and 40-44 MiB with pages of 500 (benches/startup_at_scale.rs). An API
        // server that refuses them (WatchList off, before 1.32) gets paged lists instead.
        let mut streaming = true;
        let mut events = watch_events(api.clone(), streaming);
        // A relist is built aside and swapped in whole, so entries deleted while we were
        // disconnected disappear and the index never looks half-empty.
        let mut relist: Option<Store> = None;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => {
                    self.watch_health().healthy();
                    event
                }
                Err(err) => {
                    self.inner.metrics.watch_errors.inc();
                    self.watch_health().failed(Instant::now(), chain(&err));
                    let api_server = self.inner.api.as_ref().map_or("", |a| a.url.as_str());
                    if streaming && !self.is_ready() && refuses_streaming(&err) {
                        tracing::info!(%api_server, error = %chain(&err), "the API server does not stream lists; listing ServiceAccounts in pages instead");
                        streaming = false;
                        events = watch_events(api.clone(), streaming);
                        continue;
                    }
                    tracing::warn!(%api_server, error = %chain(&err), "ServiceAccount watch error; retrying with backoff");
                    continue;
                }
            };
            match event {
                watcher::Event::Init => relist = Some(Store::new()),
                watcher::Event::InitApply(sa) => {
                    if let (Some(store), Some((ns, name))) = (&mut relist, key_of(&sa)) {
                        insert(store, ns, name, self.annotations_of(&sa));
                    }
                }
                watcher::Event::InitDone => {
                    if let Some(store) = relist.take() {
                        let count = store.values().map(HashMap::len).sum::<usize>();
                        *self.write() = store;
                        self.publish_counts(&self.read());
                        self.inner.metrics.index_syncs.inc();
                        if !self.inner.ready.swap(true, Ordering::AcqRel) {
                            tracing::info!(
                                service_accounts = count,
                                "ServiceAccount index synced; ready"
                            );
                        } else {
                            tracing::info!(
                                service_accounts = count,
                                "ServiceAccount index relisted"
                            );
                        }
                    }
                }
                watcher::Event::Apply(sa) => {
                    if let Some((ns, name)) = key_of(&sa) {
                        self.insert(ns, name, self.annotations_of(&sa));
                    }
                }
                watcher::Event::Delete(sa) => {
                    if let Some((ns, name)) = key_of(&sa) {
                        self.remove(ns, name);
                    }
                }
            }
        }
    }
}

/// How long after its last error the watch still counts as failing: longer than the watcher's
/// longest backoff with jitter (30 s, doubled at most), so a watch that keeps failing never
/// looks healthy between two retries, and one that recovered on a quiet cluster (which sends no
/// event to prove it) stops being reported within this time.
const FAILING_WINDOW: Duration = Duration::from_secs(90);

/// Whether the ServiceAccount watch is failing, for `/readyz`.
#[derive(Debug, Default)]
struct WatchHealth {
    /// The first error after the last healthy spell.
    failing_since: Option<Instant>,
    /// The newest error and when it happened.
    last_error: Option<(Instant, String)>,
}

impl WatchHealth {
    fn failed(&mut self, at: Instant, error: String) {
        if self.note(at).is_none() {
            self.failing_since = Some(at);
        }
        self.last_error = Some((at, error));
    }

    fn healthy(&mut self) {
        *self = Self::default();
    }

    /// What `/readyz` says about a watch that failed within [`FAILING_WINDOW`] of `now`.
    fn note(&self, now: Instant) -> Option<String> {
        let (at, error) = self.last_error.as_ref()?;
        let ago = now.saturating_duration_since(*at);
        if ago >= FAILING_WINDOW {
            return None;
        }
        let since = now.saturating_duration_since(self.failing_since.unwrap_or(*at));
        let whole = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
        Some(format!(
            "the ServiceAccount watch has been failing for {} (last error {} ago: {error}); \
             role annotation changes may be missed until it recovers",
            whole(since),
            whole(ago)
        ))
    }
}

/// Page size of the initial list when the API server does not stream lists.
const LIST_PAGE_SIZE: u32 = 500;

type Events = futures::stream::BoxStream<
    'static,
    Result<watcher::Event<PartialObjectMeta<ServiceAccount>>, watcher::Error>,
>;

/// The ServiceAccount watch, its initial state streamed or listed in pages.
fn watch_events(api: Api<PartialObjectMeta<ServiceAccount>>, streaming: bool) -> Events {
    let config = if streaming {
        watcher::Config::default().streaming_lists()
    } else {
        watcher::Config::default().page_size(LIST_PAGE_SIZE)
    };
    watcher::watcher(api, config).default_backoff().boxed()
}

/// Whether the API server refused a streaming list (400 or 422 for `sendInitialEvents`), as
/// opposed to failing for another reason (unreachable, forbidden) that paging would not fix.
fn refuses_streaming(err: &watcher::Error) -> bool {
    let status = match err {
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status,
        watcher::Error::WatchError(status) => status,
        _ => return false,
    };
    matches!(status.code, 400 | 422)
}

fn key_of(sa: &PartialObjectMeta<ServiceAccount>) -> Option<(&str, &str)> {
    Some((
        sa.metadata.namespace.as_deref()?,
        sa.metadata.name.as_deref()?,
    ))
}

/// Whether an entry carries a role annotation (the `annotated_serviceaccounts` gauge).
fn has_role(annotations: &Option<Arc<SaAnnotations>>) -> bool {
    annotations.as_ref().is_some_and(|a| a.role_arn.is_some())
}

/// Inserts an entry; returns the one it replaced.
fn insert(
    store: &mut Store,
    namespace: &str,
    name: &str,
    annotations: Option<Arc<SaAnnotations>>,
) -> Option<Option<Arc<SaAnnotations>>> {
    match store.get_mut(namespace) {
        Some(names) => names.insert(name.into(), annotations),
        None => {
            store.insert(
                namespace.into(),
                HashMap::from([(name.into(), annotations)]),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_watch_is_noted_until_it_recovers_or_the_window_passes() {
        let start = Instant::now();
        let mut health = WatchHealth::default();
        assert_eq!(health.note(start), None);
        health.failed(start, "connection refused".into());
        health.failed(start + Duration::from_secs(30), "403 Forbidden".into());
        let note = health.note(start + Duration::from_secs(40)).unwrap();
        assert_eq!(
            note,
            "the ServiceAccount watch has been failing for 40s (last error 10s ago: 403 \
             Forbidden); role annotation changes may be missed until it recovers"
        );
        assert_eq!(
            health.note(start + Duration::from_secs(30) + FAILING_WINDOW),
            None,
            "no error for longer than any backoff: recovered"
        );
        health.failed(start + Duration::from_secs(200), "timed out".into());
        let note = health.note(start + Duration::from_secs(201)).unwrap();
        assert!(note.contains("failing for 1s"), "a new spell: {note}");
        health.healthy();
        assert_eq!(health.note(start + Duration::from_secs(202)), None);
    }

    fn entry(ns: &str, name: &str, role: Option<&str>) -> ServiceAccountEntry {
        ServiceAccountEntry {
            namespace: ns.into(),
            name: name.into(),
            annotations: role.map(|r| SaAnnotations::named(&[("role-arn", r)]).unwrap()),
        }
    }

    #[tokio::test]
    async fn static_index_answers_hits_and_misses_and_counts() {
        let metrics = Arc::new(Metrics::default());
        let index = Index::from_entries(
            vec![
                entry("a", "with-role", Some("arn")),
                entry("a", "plain", None),
            ],
            Arc::new(InjectionConfig::default()),
            metrics.clone(),
        );
        assert!(index.is_ready());
        let Lookup::Found(Some(sa)) = index.lookup("a", "with-role").await else {
            panic!("expected a role");
        };
        assert_eq!(sa.role_arn.as_deref(), Some("arn"));
        assert_eq!(index.lookup("a", "plain").await, Lookup::Found(None));
        assert_eq!(index.lookup("b", "plain").await, Lookup::NotFound);
        let text = metrics.encode();
        assert!(text.contains("irsa_webhook_serviceaccounts 2"), "{text}");
        assert!(text.contains("irsa_webhook_annotated_serviceaccounts 1"));
        assert!(text.contains("irsa_webhook_serviceaccount_lookups_total{result=\"cache\"} 2"));
    }
}
