//! Self-managed serving certificate: a CA and a serving certificate kept in one Secret shared by
//! every replica, renewed before expiry, and the webhook configuration's `caBundle` kept in sync.
//!
//! Replicas coordinate through the API server's optimistic concurrency: whoever writes first
//! wins, the others read the winner's Secret. Every replica derives the same `caBundle` from the
//! Secret and patches the webhook configuration only when it differs, so they never flap. A new
//! CA is published in the `caBundle` (next to the previous CA) before any replica serves a
//! certificate signed by it.

use crate::serving::errors::chain;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

use crate::certs::{self, Bundle, CertInfo, CertsError};
use crate::serving::tls::ReloadingConfig;

/// Lifetime of a serving certificate; its CA lives twice as long. Renewal starts when a third
/// of the lifetime is left.
pub const SERVING_DAYS: u32 = 365;

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
/// The CA this one replaced, kept in the `caBundle` until it expires.
const CA_PREVIOUS: &str = "ca-previous.crt";

/// Why the Secret or the webhook configuration could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum CertSecretError {
    #[error("Secret {secret}: {}", chain(cause))]
    Secret { secret: String, cause: kube::Error },
    #[error("MutatingWebhookConfiguration {name}: {}", chain(cause))]
    WebhookConfig { name: String, cause: kube::Error },
    #[error("Secret {secret}: kept changing under us; giving up for now")]
    Contended { secret: String },
    #[error(transparent)]
    Certs(#[from] CertsError),
}

/// The certificate material in the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub bundle: Bundle,
    /// The previous CA, while it is still valid.
    pub previous_ca: Option<String>,
}

impl Material {
    /// The serving certificate and key, named for error messages.
    pub fn pem_sources(
        &self,
    ) -> (
        crate::serving::tls::PemSource<'_>,
        crate::serving::tls::PemSource<'_>,
    ) {
        (
            crate::serving::tls::PemSource {
                name: TLS_CERT,
                pem: self.bundle.tls_cert.as_bytes(),
            },
            crate::serving::tls::PemSource {
                name: TLS_KEY,
                pem: self.bundle.tls_key.as_bytes(),
            },
        )
    }

    /// What API servers must trust: the current CA and, during a rotation, the previous one.
    pub fn ca_bundle(&self) -> String {
        let mut out = self.bundle.ca_cert.clone();
        if let Some(previous) = &self.previous_ca {
            out.push_str(previous);
        }
        out
    }
}

/// How long a new CA is in the published `caBundle` before a replica serves a certificate it
/// signed: API servers learn the new bundle through their watch of webhook configurations, and
/// one that has not yet would refuse the certificate (a lost call).
pub const CA_PROPAGATION: Duration = Duration::from_secs(10);

/// When a new CA was first seen in a published `caBundle`.
#[derive(Debug, Default)]
pub struct CaRollout {
    first_published: Option<(String, Instant)>,
}

impl CaRollout {
    /// Whether `next` (its CA just published, at `now`) may replace the served `current`: at
    /// once under the same CA, [`CA_PROPAGATION`] after its CA was first published otherwise.
    pub fn may_serve(&mut self, current: &Material, next: &Material, now: Instant) -> bool {
        let ca = &next.bundle.ca_cert;
        if *ca == current.bundle.ca_cert {
            return true;
        }
        let since = match &self.first_published {
            Some((seen, since)) if seen == ca => *since,
            _ => {
                self.first_published = Some((ca.clone(), now));
                now
            }
        };
        now.saturating_duration_since(since) >= CA_PROPAGATION
    }
}

/// What to do with the Secret's current content.
#[derive(Debug)]
pub enum Plan {
    /// It is valid: use it.
    Keep(Material),
    /// Write this instead (new, renewed, or repaired).
    Write(Material),
}

/// Decides, from the Secret's data (if any), whether it can be used at `now` (Unix seconds) for
/// `dns`, and what to write otherwise. Pure apart from key generation.
pub fn plan(
    data: Option<&BTreeMap<String, String>>,
    dns: &[String],
    now: i64,
) -> Result<Plan, CertsError> {
    let Some(data) = data else {
        return fresh(dns, None);
    };
    let get = |k: &str| data.get(k).map(String::as_str);
    let (Some(ca_cert), Some(ca_key), Some(tls_cert), Some(tls_key)) =
        (get(CA_CERT), get(CA_KEY), get(TLS_CERT), get(TLS_KEY))
    else {
        tracing::warn!("certificate Secret is incomplete; generating a new CA and certificate");
        return fresh(dns, None);
    };
    let ca = match CertInfo::from_pem(ca_cert) {
        Ok(ca) if !ca.needs_renewal(now) => ca,
        Ok(_) => {
            tracing::info!("CA certificate due for renewal; rotating the CA");
            return fresh(dns, Some(ca_cert));
        }
        Err(err) => {
            tracing::warn!(error = %err, "CA certificate unreadable; generating a new CA");
            return fresh(dns, None);
        }
    };
    let previous_ca = get(CA_PREVIOUS)
        .filter(|pem| CertInfo::from_pem(pem).is_ok_and(|info| info.not_after > now))
        .map(str::to_owned);
    let serving_ok = CertInfo::from_pem(tls_cert).is_ok_and(|info| {
        !info.needs_renewal(now)
            && info.not_after <= ca.not_after
            && dns.iter().all(|d| info.dns_names.contains(d))
    });
    let stored = Material {
        bundle: Bundle {
            ca_cert: ca_cert.to_owned(),
            ca_key: ca_key.to_owned(),
            tls_cert: tls_cert.to_owned(),
            tls_key: tls_key.to_owned(),
        },
        previous_ca,
    };
    let pair_ok = || {
        let (cert, key) = stored.pem_sources();
        crate::serving::tls::server_config_from_pem(&cert, &key).is_ok()
    };
    if serving_ok && pair_ok() {
        return Ok(Plan::Keep(stored));
    }
    let previous_ca = stored.previous_ca;
    tracing::info!("serving certificate due for renewal or not matching its names; renewing");
    let bundle = certs::resign(ca_cert, ca_key, dns, &[], SERVING_DAYS)?;
    Ok(Plan::Write(Material {
        bundle,
        previous_ca,
    }))
}

/// A new CA and certificate; `replaced_ca` stays trusted during the rotation.
fn fresh(dns: &[String], replaced_ca: Option<&str>) -> Result<Plan, CertsError> {
    Ok(Plan::Write(Material {
        bundle: certs::generate(dns, &[], SERVING_DAYS)?,
        previous_ca: replaced_ca.map(str::to_owned),
    }))
}

/// The Secret and webhook configuration of one webhook deployment.
pub struct CertSecret {
    secrets: Api<Secret>,
    configs: Api<MutatingWebhookConfiguration>,
    secret: String,
    namespace: String,
    dns: Vec<String>,
    webhook_config: Option<String>,
}

impl CertSecret {
    /// Manages Secret `namespace/secret` for names `dns`, syncing `webhook_config` if given.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        secret: &str,
        dns: Vec<String>,
        webhook_config: Option<String>,
    ) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), namespace),
            configs: Api::all(client),
            secret: secret.to_owned(),
            namespace: namespace.to_owned(),
            dns,
            webhook_config,
        }
    }

    /// Reads the Secret, creating or renewing it when needed, and returns what to serve.
    pub async fn ensure(&self) -> Result<Material, CertSecretError> {
        let secret_err = |cause| CertSecretError::Secret {
            secret: format!("{}/{}", self.namespace, self.secret),
            cause,
        };
        for _ in 0..5 {
            let current = self
                .secrets
                .get_opt(&self.secret)
                .await
                .map_err(secret_err)?;
            let data = current.as_ref().map(decode);
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let material = match plan(data.as_ref(), &self.dns, now)? {
                Plan::Keep(material) => return Ok(material),
                Plan::Write(material) => material,
            };
            let written = match current {
                None => {
                    let secret = self.secret_object(&material, None);
                    self.secrets.create(&PostParams::default(), &secret).await
                }
                Some(existing) => {
                    let secret = self.secret_object(&material, existing.metadata.resource_version);
                    self.secrets
                        .replace(&self.secret, &PostParams::default(), &secret)
                        .await
                }
            };
            match written {
                Ok(_) => {
                    tracing::info!(secret = %self.secret, "certificate Secret written");
                    return Ok(material);
                }
                // Another replica wrote first: read and judge its Secret.
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(err) => return Err(secret_err(err)),
            }
        }
        Err(CertSecretError::Contended {
            secret: format!("{}/{}", self.namespace, self.secret),
        })
    }

    /// Sets every webhook's `caBundle` in the configuration to `ca_bundle` where it differs.
    /// Returns whether anything was written.
    pub async fn sync_ca_bundle(&self, ca_bundle: &str) -> Result<bool, CertSecretError> {
        let Some(name) = &self.webhook_config else {
            return Ok(false);
        };
        let config_err = |cause| CertSecretError::WebhookConfig {
            name: name.clone(),
            cause,
        };
        for _ in 0..5 {
            let mut config = self.configs.get(name).await.map_err(config_err)?;
            let wanted = ByteString(ca_bundle.as_bytes().to_vec());
            let mut changed = false;
            for webhook in config.webhooks.iter_mut().flatten() {
                if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
                    webhook.client_config.ca_bundle = Some(wanted.clone());
                    changed = true;
                }
            }
            if !changed {
                return Ok(false);
            }
            // `replace` carries the resourceVersion we read: a concurrent writer makes it fail.
            match self
                .configs
                .replace(name, &PostParams::default(), &config)
                .await
            {
                Ok(_) => {
                    tracing::info!(webhook_config = %name, "caBundle updated");
                    return Ok(true);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(err) => return Err(config_err(err)),
            }
        }
        Err(CertSecretError::Contended {
            secret: name.clone(),
        })
    }

    /// Every `interval`: renews or picks up the Secret, publishes its CA, and serves a
    /// certificate signed by a new CA only once that CA has been in the `caBundle` for
    /// [`CA_PROPAGATION`], so API servers trust it before they meet it.
    pub async fn maintain(
        self,
        tls: Arc<ReloadingConfig>,
        mut current: Material,
        interval: Duration,
    ) {
        let mut rollout = CaRollout::default();
        loop {
            tokio::time::sleep(interval).await;
            let material = match self.ensure().await {
                Ok(material) => material,
                Err(err) => {
                    tracing::warn!(error = %err, "certificate Secret not checked; retrying");
                    continue;
                }
            };
            if let Err(err) = self.sync_ca_bundle(&material.ca_bundle()).await {
                tracing::warn!(error = %err, "caBundle not updated; keeping the current certificate");
                continue;
            }
            if material != current && !rollout.may_serve(&current, &material, Instant::now()) {
                tracing::info!(
                    wait = ?CA_PROPAGATION,
                    "a new CA is published; its certificate is served once API servers have seen it"
                );
            } else if material != current {
                let (cert, key) = material.pem_sources();
                match tls.replace_pem(&cert, &key) {
                    Ok(()) => {
                        tracing::info!("serving the certificate from the Secret");
                        current = material;
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "certificate from the Secret unusable")
                    }
                }
            }
        }
    }

    fn secret_object(&self, material: &Material, resource_version: Option<String>) -> Secret {
        let b = &material.bundle;
        let mut data: BTreeMap<String, ByteString> = [
            (CA_CERT, &b.ca_cert),
            (CA_KEY, &b.ca_key),
            (TLS_CERT, &b.tls_cert),
            (TLS_KEY, &b.tls_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect();
        if let Some(previous) = &material.previous_ca {
            data.insert(
                CA_PREVIOUS.to_owned(),
                ByteString(previous.as_bytes().to_vec()),
            );
        }
        let mut secret = Secret {
            data: Some(data),
            type_: Some("Opaque".into()),
            ..Secret::default()
        };
        secret.metadata.name = Some(self.secret.clone());
        secret.metadata.namespace = Some(self.namespace.clone());
        secret.metadata.resource_version = resource_version;
        secret.metadata.labels = Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_owned(),
            "irsa-webhook".to_owned(),
        )]));
        secret
    }
}

/// The Secret's data as text; values that are not UTF-8 are left out (and judged missing).
fn decode(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_ca_is_served_only_after_it_propagated_a_renewal_at_once() {
        let current = written(fresh(&names(), None).unwrap());
        let renewed = Material {
            bundle: certs::Bundle {
                tls_cert: "another certificate".into(),
                ..current.bundle.clone()
            },
            previous_ca: None,
        };
        let rotated = written(fresh(&names(), None).unwrap());
        let start = Instant::now();
        let mut rollout = CaRollout::default();
        assert!(
            rollout.may_serve(&current, &renewed, start),
            "same CA: at once"
        );
        assert!(!rollout.may_serve(&current, &rotated, start));
        let just_before = start + CA_PROPAGATION - Duration::from_millis(1);
        assert!(!rollout.may_serve(&current, &rotated, just_before));
        assert!(rollout.may_serve(&current, &rotated, start + CA_PROPAGATION));
        let again = written(fresh(&names(), None).unwrap());
        let later = start + CA_PROPAGATION * 2;
        assert!(
            !rollout.may_serve(&current, &again, later),
            "another new CA waits from when it was published"
        );
    }

    fn names() -> Vec<String> {
        vec!["webhook.ns.svc".into()]
    }

    fn data(m: &Material) -> BTreeMap<String, String> {
        let b = &m.bundle;
        let mut d: BTreeMap<String, String> = [
            (CA_CERT, &b.ca_cert),
            (CA_KEY, &b.ca_key),
            (TLS_CERT, &b.tls_cert),
            (TLS_KEY, &b.tls_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
        if let Some(p) = &m.previous_ca {
            d.insert(CA_PREVIOUS.into(), p.clone());
        }
        d
    }

    fn written(plan: Plan) -> Material {
        match plan {
            Plan::Write(m) => m,
            Plan::Keep(_) => panic!("expected a write"),
        }
    }

    #[test]
    fn missing_or_incomplete_secret_gets_a_new_ca() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let m = written(plan(None, &names(), now).unwrap());
        assert_eq!(
            CertInfo::from_pem(&m.bundle.tls_cert).unwrap().dns_names,
            names()
        );
        assert!(m.previous_ca.is_none());
        let mut incomplete = data(&m);
        incomplete.remove(TLS_KEY);
        let again = written(plan(Some(&incomplete), &names(), now).unwrap());
        assert_ne!(again.bundle.ca_cert, m.bundle.ca_cert);
    }

    #[test]
    fn a_valid_secret_is_kept_as_is() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let m = written(plan(None, &names(), now).unwrap());
        match plan(Some(&data(&m)), &names(), now).unwrap() {
            Plan::Keep(kept) => assert_eq!(kept, m),
            Plan::Write(_) => panic!("a valid Secret must be kept"),
        }
    }

    #[test]
    fn serving_certificate_renews_under_the_same_ca() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let m = written(plan(None, &names(), now).unwrap());
        // Two thirds into the serving certificate's life (the CA is still young).
        let later = now + i64::from(SERVING_DAYS) * 86_400 * 2 / 3 + 86_400;
        let renewed = written(plan(Some(&data(&m)), &names(), later).unwrap());
        assert_eq!(renewed.bundle.ca_cert, m.bundle.ca_cert);
        assert_ne!(renewed.bundle.tls_cert, m.bundle.tls_cert);
        // New names also renew it.
        let other = vec!["other.ns.svc".to_owned()];
        let renamed = written(plan(Some(&data(&m)), &other, now).unwrap());
        assert_eq!(
            CertInfo::from_pem(&renamed.bundle.tls_cert)
                .unwrap()
                .dns_names,
            other
        );
    }

    #[test]
    fn an_ageing_ca_is_rotated_and_the_old_one_stays_trusted() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let m = written(plan(None, &names(), now).unwrap());
        let later = now + i64::from(SERVING_DAYS) * 2 * 86_400 * 2 / 3 + 86_400;
        let rotated = written(plan(Some(&data(&m)), &names(), later).unwrap());
        assert_ne!(rotated.bundle.ca_cert, m.bundle.ca_cert);
        assert_eq!(
            rotated.previous_ca.as_deref(),
            Some(m.bundle.ca_cert.as_str())
        );
        assert_eq!(
            rotated.ca_bundle(),
            format!("{}{}", rotated.bundle.ca_cert, m.bundle.ca_cert)
        );
    }

    #[test]
    fn a_mismatched_key_is_repaired() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let m = written(plan(None, &names(), now).unwrap());
        let other = written(plan(None, &names(), now).unwrap());
        let mut broken = data(&m);
        broken.insert(TLS_KEY.into(), other.bundle.tls_key.clone());
        let repaired = written(plan(Some(&broken), &names(), now).unwrap());
        assert_eq!(repaired.bundle.ca_cert, m.bundle.ca_cert);
    }
}
