//! The ServiceAccount index: which ServiceAccounts exist and the role annotations of those that
//! have one, kept current by a cluster-wide metadata-only list and watch ([`watch`]), with one
//! shared, time-bounded API GET per ServiceAccount that is not (yet) in the index.

mod list;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;

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

    /// An index fed by a cluster-wide metadata list and watch; not ready until the first list
    /// completes. The returned future runs forever (it retries with backoff) and must be spawned.
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
        let task = watch::run(index.clone(), client).boxed();
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
        let sas: Api<ServiceAccount> = Api::namespaced(api.client.clone(), namespace);
        let (namespace, name, timeout) = (namespace.to_owned(), name.to_owned(), api.timeout);
        let api_url = api.url.clone();
        let task = tokio::spawn(async move {
            let result = tokio::time::timeout(timeout, sas.get_metadata_opt(&name)).await;
            let lookup = match result {
                Ok(Ok(Some(sa))) => {
                    index.inner.metrics.lookup("api_found");
                    let annotations = index.annotations_of(sa.metadata.annotations.as_ref());
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

    /// What the index keeps of a ServiceAccount's annotations.
    fn annotations_of(
        &self,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Option<Arc<SaAnnotations>> {
        let pairs = annotations.into_iter().flatten();
        let pairs = pairs.map(|(k, v)| (k.as_str(), v.as_str()));
        SaAnnotations::from_annotations(&self.inner.cfg, pairs).map(Arc::new)
    }

    /// Swaps in a complete list; the index is ready from the first one on.
    fn replace(&self, store: Store) {
        let count = store.values().map(HashMap::len).sum::<usize>();
        self.publish_counts(&store);
        *self.write() = store;
        self.inner.metrics.index_syncs.inc();
        if !self.inner.ready.swap(true, Ordering::AcqRel) {
            tracing::info!(
                service_accounts = count,
                "ServiceAccount index synced; ready"
            );
        } else {
            tracing::info!(service_accounts = count, "ServiceAccount index relisted");
        }
    }

    /// Records a failed list or watch (retried with backoff) for `/readyz`, logs and metrics.
    fn watch_failed(&self, error: String) {
        self.inner.metrics.watch_errors.inc();
        let api_server = self.inner.api.as_ref().map_or("", |a| a.url.as_str());
        tracing::warn!(%api_server, %error, "ServiceAccount watch error; retrying with backoff");
        self.watch_health().failed(Instant::now(), error);
    }

    /// Records that the watch is running again.
    fn watch_healthy(&self) {
        self.watch_health().healthy();
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
}

/// How long after its last error the watch still counts as failing: longer than the longest
/// retry delay with jitter (`watch::Backoff`, 45 s), so a watch that keeps failing never
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
