//! The ServiceAccount and, with `--pod`, the pod: is the role annotated and valid, was the pod
//! mutated and if not why, and will the SDK in it use the injected identity.

use std::collections::BTreeMap;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, ServiceAccount};
use kube::Api;

use super::dry_run;
use super::report::{Check, Report};
use super::webhook::Webhooks;
use crate::injection::config::InjectionConfig;
use crate::injection::config::{AnnotationKeys, VOLUME_NAME, parse_go_bool};
use crate::injection::identity::{self, MAX_ROLE_ARN_LEN, check_role_arn};
use crate::serving::errors::chain;

/// The ServiceAccount (and pod) a run is about.
pub struct Workload {
    pub namespace: String,
    pub service_account: String,
    pub role_arn: Option<String>,
    /// The audience the webhook injects: the annotation's, else the default.
    pub audience: String,
    pub pod: Option<Pod>,
}

/// Environment variables an AWS SDK prefers to a web identity token.
const SHADOWING: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// Reads the pod (with `--pod`) and its ServiceAccount; `serviceaccount` and `role.arn`.
pub async fn load(
    client: &kube::Client,
    namespace: &str,
    service_account: Option<&str>,
    pod: Option<&str>,
    cfg: &InjectionConfig,
    report: &mut Report,
) -> Option<Workload> {
    let keys = &cfg.keys;
    let pod = match pod {
        None => None,
        Some(name) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            match pods.get(name).await {
                Ok(pod) => Some(pod),
                Err(e) => {
                    report.push(Check::fail(
                        "pod.mutated",
                        format!("cannot read pod {namespace}/{name}: {}", chain(&e)),
                        "check the pod name and namespace (-n)",
                    ));
                    return None;
                }
            }
        }
    };
    let name = pod
        .as_ref()
        .and_then(|p| p.spec.as_ref()?.service_account_name.clone())
        .or_else(|| service_account.map(str::to_owned))
        .unwrap_or_else(|| "default".into());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let account = match accounts.get_opt(&name).await {
        Ok(Some(account)) => account,
        Ok(None) => {
            report.push(Check::fail(
                "serviceaccount",
                format!("ServiceAccount {namespace}/{name} does not exist"),
                format!("kubectl -n {namespace} create serviceaccount {name}"),
            ));
            return None;
        }
        Err(e) => {
            report.push(Check::fail(
                "serviceaccount",
                format!(
                    "cannot read ServiceAccount {namespace}/{name}: {}",
                    chain(&e)
                ),
                "allow this identity to get serviceaccounts",
            ));
            return None;
        }
    };
    let annotations = account.metadata.annotations.clone().unwrap_or_default();
    let role_arn = annotations
        .get(&keys.role_arn)
        .map(|v| cfg.role_arn(v).into_owned());
    // The webhook's own rule; a blank annotation is already shown by the admission warning.
    let audience = identity::audience(
        annotations.get(&keys.audience).map(String::as_str),
        &name,
        cfg,
        &mut Vec::new(),
    );
    role(
        namespace,
        &name,
        &annotations,
        role_arn.as_deref(),
        keys,
        report,
    );
    Some(Workload {
        namespace: namespace.to_owned(),
        service_account: name,
        role_arn,
        audience,
        pod,
    })
}

/// `role.arn`: the annotation exists and is a role ARN STS takes.
fn role(
    namespace: &str,
    name: &str,
    annotations: &BTreeMap<String, String>,
    role_arn: Option<&str>,
    keys: &AnnotationKeys,
    report: &mut Report,
) {
    const ID: &str = "role.arn";
    match role_arn {
        None => {
            let near = annotations
                .keys()
                .filter_map(|k| keys.unknown(k, crate::injection::config::On::ServiceAccount))
                .collect::<Vec<_>>();
            let near = if near.is_empty() {
                String::new()
            } else {
                format!(" ({})", near.join("; "))
            };
            report.push(Check::fail(
                ID,
                format!("ServiceAccount {namespace}/{name} has no {} annotation{near}: pods get no AWS identity", keys.role_arn),
                format!("kubectl -n {namespace} annotate serviceaccount {name} {}=arn:aws:iam::<account>:role/<name>", keys.role_arn),
            ));
        }
        Some(arn) if arn.len() > MAX_ROLE_ARN_LEN => report.push(Check::fail(
            ID,
            format!(
                "the role ARN is {} characters long; STS takes at most {MAX_ROLE_ARN_LEN}",
                arn.len()
            ),
            "fix the annotation",
        )),
        Some(arn) => match check_role_arn(arn) {
            Ok(()) => report.push(Check::ok(
                ID,
                format!("{namespace}/{name} is annotated with {arn}"),
            )),
            Err(why) => report.push(Check::fail(
                ID,
                format!(
                    "{}={arn:?} is not a valid IAM role ARN: {why}",
                    keys.role_arn
                ),
                "use arn:<partition>:iam::<12-digit account>:role/<name>",
            )),
        },
    }
}

impl Workload {
    /// `pod.mutated`, `pod.env` and `pod.token-file` (only with `--pod`).
    pub async fn check_pod(
        &self,
        client: &kube::Client,
        keys: &AnnotationKeys,
        webhooks: &Webhooks,
        limit: Duration,
        report: &mut Report,
    ) {
        let Some(pod) = &self.pod else {
            report.push(Check::skip(
                "pod.mutated",
                "no --pod: give one to check its mutation and environment",
            ));
            return;
        };
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let mutated = spec
            .volumes
            .iter()
            .flatten()
            .any(|v| v.name == VOLUME_NAME && v.projected.is_some());
        if mutated {
            let roles: Vec<&str> = spec
                .containers
                .iter()
                .flat_map(|c| c.env.iter().flatten())
                .filter(|v| v.name == "AWS_ROLE_ARN")
                .filter_map(|v| v.value.as_deref())
                .collect();
            match &self.role_arn {
                Some(wanted) if !roles.contains(&wanted.as_str()) => report.push(Check::warn(
                    "pod.mutated",
                    format!("pod {name} runs with role {roles:?}, but its ServiceAccount now names {wanted}"),
                    format!("restart the pod to pick up the new role: kubectl -n {} delete pod {name}", self.namespace),
                )),
                _ => report.push(Check::ok(
                    "pod.mutated",
                    format!("pod {name} has the {VOLUME_NAME} volume and role {}", self.role_arn.as_deref().unwrap_or_default()),
                )),
            }
            self.env(client, name, &spec.containers, report).await;
            token_file(name, &spec, report);
            return;
        }
        report.push(
            self.why_not_mutated(client, pod, keys, webhooks, limit)
                .await,
        );
    }

    async fn why_not_mutated(
        &self,
        client: &kube::Client,
        pod: &Pod,
        keys: &AnnotationKeys,
        webhooks: &Webhooks,
        limit: Duration,
    ) -> Check {
        const ID: &str = "pod.mutated";
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let restart = if pod
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| !o.is_empty())
        {
            format!(
                "kubectl -n {} delete pod {name} (its controller recreates it)",
                self.namespace
            )
        } else {
            format!(
                "delete pod {name} (kubectl -n {} delete pod {name}) and create it again: it has no controller to do so",
                self.namespace
            )
        };
        if self.role_arn.is_none() {
            return Check::fail(
                ID,
                format!(
                    "pod {name} was not mutated: its ServiceAccount {} has no {} annotation",
                    self.service_account, keys.role_arn
                ),
                format!("annotate the ServiceAccount, then {restart}"),
            );
        }
        let opted_out = |map: &Option<BTreeMap<String, String>>| {
            map.as_ref()
                .and_then(|m| m.get(&keys.skip_pod))
                .is_some_and(|v| parse_go_bool(v) == Some(true))
        };
        if opted_out(&pod.metadata.labels) || opted_out(&pod.metadata.annotations) {
            return Check::ok(
                ID,
                format!(
                    "pod {name} opted out with {}=true: not mutated, as asked",
                    keys.skip_pod
                ),
            );
        }
        let (selected, policy) = match webhooks {
            Webhooks::Selected(s) => (s.name(), s.failure_policy().to_owned()),
            Webhooks::NoneSelects => {
                return Check::fail(
                    ID,
                    format!(
                        "pod {name} was not mutated: no webhook is called for it (see webhook.config)"
                    ),
                    format!("fix the webhook, then {restart}"),
                );
            }
            // The configurations are not readable here: judged by the dry run alone.
            Webhooks::Unknown => ("the webhook".to_owned(), "unknown".to_owned()),
        };
        match self.mutated_now(client, pod, limit).await {
            Ok(true) => {
                let created = pod
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string());
                Check::fail(
                    ID,
                    format!(
                        "pod {name} was not mutated when it was created ({}), but a copy created now is: the annotation came later, or {selected} was down then (failurePolicy {policy})",
                        created.unwrap_or_default()
                    ),
                    restart,
                )
            }
            Ok(false) => Check::fail(
                ID,
                format!(
                    "pod {name} was not mutated, and a copy created now (dry run) is not either, although {selected} selects it: the webhook does not mutate"
                ),
                "check the webhook's logs and its admission warnings (kubectl create --dry-run=server -o yaml shows them)",
            ),
            Err(why) => Check::fail(
                ID,
                format!(
                    "pod {name} was not mutated although {selected} selects it (failurePolicy {policy}): the annotation came later or the webhook failed when it was created; {why}"
                ),
                format!("check the webhook's logs and readiness, then {restart}"),
            ),
        }
    }

    /// Whether a copy of `pod` created now (server-side dry run) is mutated.
    async fn mutated_now(
        &self,
        client: &kube::Client,
        pod: &Pod,
        limit: Duration,
    ) -> Result<bool, String> {
        let mut copy = Pod {
            spec: pod.spec.clone(),
            ..Pod::default()
        };
        copy.metadata.generate_name = pod.metadata.name.as_ref().map(|n| format!("{n}-doctor-"));
        copy.metadata.labels = pod.metadata.labels.clone();
        copy.metadata.annotations = pod.metadata.annotations.clone();
        if let Some(spec) = copy.spec.as_mut() {
            spec.node_name = None;
        }
        let created = dry_run::create(client, &self.namespace, &copy, limit)
            .await
            .map_err(|e| format!("a dry-run copy could not be created: {}", e.message))?;
        Ok(created
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| v.name == VOLUME_NAME))
    }

    /// `pod.env`: variables that make an SDK ignore the web identity token.
    async fn env(
        &self,
        client: &kube::Client,
        pod: &str,
        containers: &[Container],
        report: &mut Report,
    ) {
        const ID: &str = "pod.env";
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        let mut found = Vec::new();
        let mut unseen = Vec::new();
        for container in containers {
            for var in container.env.iter().flatten() {
                if SHADOWING.contains(&var.name.as_str()) {
                    found.push(format!("container {} sets {}", container.name, var.name));
                }
                if var.name == "AWS_ROLE_ARN"
                    && let (Some(own), Some(wanted)) = (&var.value, &self.role_arn)
                    && own != wanted
                {
                    found.push(format!(
                        "container {} sets AWS_ROLE_ARN={own}, which the webhook leaves alone, not the ServiceAccount's {wanted}",
                        container.name
                    ));
                }
            }
            for source in container.env_from.iter().flatten() {
                let prefix = source.prefix.clone().unwrap_or_default();
                if let Some(cm) = &source.config_map_ref {
                    let keys = match config_maps.get_opt(&cm.name).await {
                        Ok(Some(map)) => map.data.unwrap_or_default().into_keys().collect(),
                        _ => Vec::new(),
                    };
                    for key in keys {
                        let var = format!("{prefix}{key}");
                        if SHADOWING.contains(&var.as_str()) {
                            found.push(format!(
                                "container {} gets {var} from ConfigMap {}",
                                container.name, cm.name
                            ));
                        }
                    }
                }
                if let Some(secret) = &source.secret_ref {
                    unseen.push(format!(
                        "Secret {} (container {})",
                        secret.name, container.name
                    ));
                }
            }
        }
        let unseen = if unseen.is_empty() {
            String::new()
        } else {
            format!("; not read: envFrom {}", unseen.join(", "))
        };
        if found.is_empty() {
            report.push(Check::ok(
                ID,
                format!(
                    "no variable of pod {pod} takes precedence over the web identity token{unseen}"
                ),
            ));
        } else {
            report.push(Check::warn(
                ID,
                format!(
                    "{}: AWS SDKs use these before the web identity token{unseen}",
                    found.join("; ")
                ),
                "remove static AWS credentials and AWS_PROFILE from the pod",
            ));
        }
    }
}

/// `pod.token-file`: a non-root container can read the token file.
fn token_file(pod: &str, spec: &k8s_openapi::api::core::v1::PodSpec, report: &mut Report) {
    const ID: &str = "pod.token-file";
    let mode = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == VOLUME_NAME)
        .and_then(|v| v.projected.as_ref()?.default_mode)
        .unwrap_or(0o644);
    let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
    let pod_user = spec.security_context.as_ref().and_then(|s| s.run_as_user);
    let blocked: Vec<&str> = spec
        .containers
        .iter()
        .filter(|c| {
            let user = c
                .security_context
                .as_ref()
                .and_then(|s| s.run_as_user)
                .or(pod_user);
            let non_root = user.is_some_and(|u| u != 0);
            let readable = mode & 0o004 != 0 || (fs_group.is_some() && mode & 0o040 != 0);
            non_root && !readable
        })
        .map(|c| c.name.as_str())
        .collect();
    if blocked.is_empty() {
        report.push(Check::ok(
            ID,
            format!("the token file of pod {pod} is readable by its containers (mode {mode:o})"),
        ));
    } else {
        report.push(Check::warn(
            ID,
            format!("containers {blocked:?} run as non-root and the token volume's mode {mode:o} lets only its owner read it"),
            "set the pod's securityContext.fsGroup, or leave the volume's defaultMode unset",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verdict(spec: serde_json::Value) -> Check {
        let mut report = Report::default();
        token_file("p", &serde_json::from_value(spec).unwrap(), &mut report);
        report.checks.remove(0)
    }

    #[test]
    fn an_owner_only_token_file_is_flagged_for_non_root_containers_without_fs_group() {
        let volume = |mode: u32| json!([{"name": VOLUME_NAME, "projected": {"defaultMode": mode, "sources": []}}]);
        let container = json!([{"name": "app", "securityContext": {"runAsUser": 1000}}]);
        let blocked = verdict(json!({"containers": container, "volumes": volume(0o600)}));
        assert_eq!(
            blocked.status,
            super::super::report::Status::Warn,
            "{blocked:?}"
        );
        assert!(blocked.message.contains("[\"app\"]"), "{blocked:?}");
        let grouped = verdict(json!({"containers": container, "volumes": volume(0o640),
            "securityContext": {"fsGroup": 2000}}));
        assert_eq!(
            grouped.status,
            super::super::report::Status::Ok,
            "{grouped:?}"
        );
        let default = verdict(json!({"containers": container,
            "volumes": [{"name": VOLUME_NAME, "projected": {"sources": []}}]}));
        assert_eq!(
            default.status,
            super::super::report::Status::Ok,
            "{default:?}"
        );
        let root = verdict(json!({"containers": [{"name": "app"}], "volumes": volume(0o600)}));
        assert_eq!(root.status, super::super::report::Status::Ok, "{root:?}");
    }
}
