//! `webhook.*`: a MutatingWebhookConfiguration intercepts the pod's creation, has ready
//! endpoints, and its `caBundle` trusts a serving certificate valid for the name it is called by.
//! These reads are cluster-scoped or in the webhook's namespace: an identity that may not make
//! them (a namespaced Role, as in the chart's `helm test`) gets `skip`, not `fail`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use rustls::pki_types::{CertificateDer, pem::PemObject};

use super::report::{Check, Report};
use super::selector::selects;
use crate::certs::CertInfo;
use crate::serving::errors::chain;
use crate::serving::probe::{self, Roots};

/// Where the pod is created.
pub struct Target<'a> {
    pub namespace: &'a str,
    /// The namespace's labels, when readable.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// The pod's labels, with `--pod`.
    pub pod_labels: Option<&'a BTreeMap<String, String>>,
}

/// The webhook that would be called for the pod.
pub struct Selected {
    pub config: String,
    pub webhook: MutatingWebhook,
}

impl Selected {
    /// `config/webhook`, as messages name it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.config, self.webhook.name)
    }

    /// The failure policy, with the API server's default.
    pub fn failure_policy(&self) -> &str {
        self.webhook.failure_policy.as_deref().unwrap_or("Fail")
    }
}

/// What `webhook.config` found out about the pod's creation.
pub enum Webhooks {
    /// This webhook is called.
    Selected(Box<Selected>),
    /// No webhook is called (`webhook.config` failed, saying why).
    NoneSelects,
    /// The configurations could not be read (`webhook.config` was skipped or failed to read).
    Unknown,
}

/// Days of validity left below which the serving certificate is worth a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// Runs `webhook.config`, `webhook.endpoints` and `webhook.certificate`; returns what is known
/// of the webhook that intercepts the pod's creation.
pub async fn check(
    client: &kube::Client,
    name: Option<&str>,
    target: &Target<'_>,
    limit: Duration,
    report: &mut Report,
) -> Webhooks {
    let found = config(client, name, target, report).await;
    if let Webhooks::Selected(selected) = &found {
        let address = endpoints(client, selected, report).await;
        if let Some((addr, server_name)) = address {
            certificate(selected, &addr, &server_name, limit, report).await;
        }
    }
    found
}

/// The API server's message when it refused the request for lack of permission.
fn forbidden(e: &kube::Error) -> Option<&str> {
    match e {
        kube::Error::Api(status) if status.code == 403 => Some(&status.message),
        _ => None,
    }
}

async fn config(
    client: &kube::Client,
    name: Option<&str>,
    target: &Target<'_>,
    report: &mut Report,
) -> Webhooks {
    const ID: &str = "webhook.config";
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let listed = match name {
        Some(name) => configs.get(name).await.map(|c| vec![c]),
        None => configs.list(&ListParams::default()).await.map(|l| l.items),
    };
    let listed = match listed {
        Ok(listed) => listed,
        Err(ref e) if let Some(said) = forbidden(e) => {
            report.push(Check::skip(
                ID,
                format!(
                    "this identity may not read MutatingWebhookConfigurations ({said}); the webhook is judged by what it does to a pod"
                ),
            ));
            return Webhooks::Unknown;
        }
        Err(e) => {
            report.push(Check::fail(
                ID,
                format!("cannot read MutatingWebhookConfigurations: {}", chain(&e)),
                "install the webhook (helm install irsa-webhook ./chart), or check --webhook-config",
            ));
            return Webhooks::Unknown;
        }
    };
    let intercepting: Vec<Selected> = listed
        .into_iter()
        .flat_map(|c| {
            let config = c.metadata.name.unwrap_or_default();
            c.webhooks
                .unwrap_or_default()
                .into_iter()
                .filter(intercepts_pod_creation)
                .map(move |webhook| Selected {
                    config: config.clone(),
                    webhook,
                })
        })
        .collect();
    if intercepting.is_empty() {
        report.push(Check::fail(
            ID,
            "no MutatingWebhookConfiguration intercepts pod creation",
            "install the webhook (helm install irsa-webhook ./chart, or manifests/)",
        ));
        return Webhooks::NoneSelects;
    }
    let empty = BTreeMap::new();
    let mut not_selecting = Vec::new();
    for selected in intercepting {
        let hook = &selected.webhook;
        let namespace_ok = target
            .namespace_labels
            .is_none_or(|labels| selects(hook.namespace_selector.as_ref(), labels));
        let object_ok = selects(
            hook.object_selector.as_ref(),
            target.pod_labels.unwrap_or(&empty),
        );
        if namespace_ok && object_ok {
            report.push(Check::ok(
                ID,
                format!(
                    "{} intercepts pod creation in {} (failurePolicy {})",
                    selected.name(),
                    target.namespace,
                    selected.failure_policy()
                ),
            ));
            return Webhooks::Selected(Box::new(selected));
        }
        let which = if namespace_ok {
            "objectSelector does not select the pod"
        } else {
            "namespaceSelector does not select the namespace"
        };
        not_selecting.push(format!("{}: {which}", selected.name()));
    }
    report.push(Check::fail(
        ID,
        format!(
            "no webhook is called for pods in {}: {}",
            target.namespace,
            not_selecting.join("; ")
        ),
        "label the namespace (or pod) to match the webhook's selectors, or widen them in the chart's webhook.namespaceSelector",
    ));
    Webhooks::NoneSelects
}

fn intercepts_pod_creation(webhook: &MutatingWebhook) -> bool {
    let has = |list: &Option<Vec<String>>, wanted: &[&str]| {
        list.iter().flatten().any(|v| wanted.contains(&v.as_str()))
    };
    webhook.rules.iter().flatten().any(|rule| {
        has(&rule.operations, &["CREATE", "*"])
            && has(&rule.api_groups, &["", "*"])
            && has(&rule.resources, &["pods", "*", "*/*"])
    })
}

/// `webhook.endpoints`: the address to reach the webhook at and the name its certificate must
/// carry.
async fn endpoints(
    client: &kube::Client,
    selected: &Selected,
    report: &mut Report,
) -> Option<(String, String)> {
    const ID: &str = "webhook.endpoints";
    let client_config = &selected.webhook.client_config;
    if let Some(url) = &client_config.url {
        let uri: axum::http::Uri = url.parse().ok()?;
        let host = uri.host()?.to_owned();
        report.push(Check::ok(ID, format!("called at {url}")));
        let addr = format!("{host}:{}", uri.port_u16().unwrap_or(443));
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        return Some((addr, name));
    }
    let service = client_config.service.as_ref()?;
    let port = service.port.unwrap_or(443);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &service.namespace);
    let selector = format!("kubernetes.io/service-name={}", service.name);
    let listed = match slices.list(&ListParams::default().labels(&selector)).await {
        Ok(listed) => listed.items,
        Err(e) => {
            let why = forbidden(&e).map_or_else(|| chain(&e), str::to_owned);
            report.push(Check::skip(
                ID,
                format!(
                    "cannot read EndpointSlices of {}/{}: {why}",
                    service.namespace, service.name,
                ),
            ));
            return None;
        }
    };
    let ready: Vec<(String, i32)> = listed
        .iter()
        .flat_map(|slice| {
            let target_port = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.port)
                .next()
                .unwrap_or(port);
            slice
                .endpoints
                .iter()
                .flatten()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
                .flat_map(move |e| e.addresses.iter().map(move |a| (a.clone(), target_port)))
        })
        .collect();
    let server_name = format!("{}.{}.svc", service.name, service.namespace);
    let Some((address, target_port)) = ready.first() else {
        report.push(Check::fail(
            ID,
            format!("Service {}/{} has no ready endpoints: the API server cannot call the webhook", service.namespace, service.name),
            format!(
                "kubectl -n {} get pods,endpointslices -l app.kubernetes.io/name=irsa-webhook; pods created meanwhile got no credentials (failurePolicy Ignore) and must be restarted",
                service.namespace
            ),
        ));
        return None;
    };
    report.push(Check::ok(
        ID,
        format!(
            "Service {}/{} has {} ready endpoint(s)",
            service.namespace,
            service.name,
            ready.len()
        ),
    ));
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.clone()
    };
    Some((format!("{host}:{target_port}"), server_name))
}

/// `webhook.certificate`: the `caBundle` trusts the serving certificate for `server_name`, and it
/// is not about to expire.
async fn certificate(
    selected: &Selected,
    addr: &str,
    server_name: &str,
    limit: Duration,
    report: &mut Report,
) {
    const ID: &str = "webhook.certificate";
    let bundle = selected
        .webhook
        .client_config
        .ca_bundle
        .as_ref()
        .map(|b| b.0.clone())
        .unwrap_or_default();
    let extra: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bundle)
        .filter_map(Result::ok)
        .collect();
    if extra.is_empty() {
        report.push(Check::fail(
            ID,
            format!("{} has no usable caBundle", selected.config),
            "let the chart or `irsa-webhook serve --self-managed-tls` fill the caBundle",
        ));
        return;
    }
    let roots = Roots {
        public: false,
        extra,
    };
    let seen = match tokio::time::timeout(limit, probe::connect(addr, server_name, &roots)).await {
        Ok(Ok((_, seen))) => seen,
        Ok(Err(e)) => {
            report.push(Check::warn(
                ID,
                format!("cannot reach the webhook from here: {e}"),
                "run doctor inside the cluster (kubectl run) to check the serving certificate",
            ));
            return;
        }
        Err(_) => {
            report.push(Check::warn(
                ID,
                format!(
                    "no TLS handshake with {addr} within {}",
                    humantime::format_duration(limit)
                ),
                "run doctor inside the cluster (kubectl run) to check the serving certificate",
            ));
            return;
        }
    };
    if let Some(Err(why)) = &seen.extra {
        report.push(Check::fail(
            ID,
            format!("the caBundle of {} does not trust the certificate served at {addr} for {server_name}: {why}", selected.config),
            "put the CA that signed the serving certificate into the caBundle (the chart and --self-managed-tls do this), or reissue the certificate for that name",
        ));
        return;
    }
    let info = seen
        .chain
        .first()
        .and_then(|der| CertInfo::from_der(der).ok());
    let Some(info) = info else {
        report.push(Check::warn(
            ID,
            "cannot read the serving certificate",
            "check the webhook's TLS files",
        ));
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = (info.not_after - now) / 86_400;
    if info.not_after <= now {
        report.push(Check::fail(
            ID,
            format!("the serving certificate expired {} days ago", -days),
            "renew it: restart the webhook with --self-managed-tls, or let cert-manager renew it",
        ));
    } else if days < EXPIRY_WARNING_DAYS {
        report.push(Check::warn(
            ID,
            format!("the serving certificate expires in {days} days"),
            "renew it before then (the webhook reloads new files without a restart)",
        ));
    } else {
        report.push(Check::ok(
            ID,
            format!(
                "the caBundle trusts the certificate served for {server_name}; {days} days left"
            ),
        ));
    }
}
