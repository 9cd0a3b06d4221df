//! Server-side dry-run pod creates (`dryRun=All`): the pod as every admission step leaves it,
//! with the API server's warnings, and nothing stored. `pod.mutated` creates a copy of an
//! existing pod this way; `webhook.dry-run` creates a small probe pod of the ServiceAccount and
//! [`verdict`] (pure) judges what came back.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
    SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use serde_json::Value;

use super::report::Check;
use super::webhook::Webhooks;
use crate::injection::config::VOLUME_NAME;
use crate::serving::errors::chain;

/// The label of every probe pod, so a webhook configuration can select exactly these (the
/// chart's `probe.irsa-webhook.io` does, in the release namespace that its main webhook leaves
/// out).
pub const PROBE_LABEL: &str = "irsa-webhook.io/doctor-probe";
/// The name prefix of probe pods; the API server adds five characters, even in a dry run.
pub const PROBE_PREFIX: &str = "irsa-doctor-probe-";
/// More than any pod the API server answers with.
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Between two attempts of `--retry-for`.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// What a dry-run create returned.
#[derive(Debug, Clone)]
pub struct Created {
    pub pod: Pod,
    /// The `Warning` headers: from admission webhooks, Pod Security and the API server.
    pub warnings: Vec<String>,
}

/// Why a dry-run create did not return a pod.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The HTTP status, when the API server answered.
    pub code: Option<u16>,
    /// The API server's message (or why it could not be asked).
    pub message: String,
    pub warnings: Vec<String>,
}

/// Creates `pod` in `namespace` with `dryRun=All`, waiting at most `limit`.
pub async fn create(
    client: &kube::Client,
    namespace: &str,
    pod: &Pod,
    limit: Duration,
) -> Result<Created, Refused> {
    let transport = |message: String| Refused {
        code: None,
        message,
        warnings: Vec::new(),
    };
    let params = PostParams {
        dry_run: true,
        field_manager: Some("irsa-webhook-doctor".into()),
    };
    let body = serde_json::to_vec(pod).expect("a Pod serializes");
    let url = <Pod as kube::Resource>::url_path(&(), Some(namespace));
    let request = kube::core::Request::new(url)
        .create(&params, body)
        .map_err(|e| transport(format!("cannot build the request: {}", chain(&e))))?
        .map(kube::client::Body::from);
    let answer = async {
        let response = client
            .send(request)
            .await
            .map_err(|e| transport(format!("the API server did not answer: {}", chain(&e))))?;
        let status = response.status().as_u16();
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| warning_text(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| transport(format!("cannot read the API server's answer: {e}")))?
            .to_bytes();
        Ok::<_, Refused>((status, warnings, body))
    };
    let (status, warnings, body) = tokio::time::timeout(limit, answer).await.map_err(|_| {
        transport(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        ))
    })??;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body)
            .map(|pod| Created { pod, warnings })
            .map_err(|e| transport(format!("the API server's answer is not a pod: {e}")));
    }
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
    Err(Refused {
        code: Some(status),
        message,
        warnings,
    })
}

/// The text of a `Warning` header (`299 - "text"`, quotes and backslashes escaped).
fn warning_text(header: &str) -> String {
    let text = header
        .split_once(" - ")
        .map_or(header, |(_, rest)| rest)
        .trim();
    let quoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// A pod of `service_account` that any namespace admits (Pod Security `restricted`, small
/// requests and limits for quotas), never run: `image` is not pulled.
pub fn probe_pod(service_account: &str, image: &str) -> Pod {
    // Built as values, not read from JSON: reading would compile the whole Pod type's
    // deserializer once more for `serde_json::Value`.
    let small = || {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity("10m".to_owned())),
            ("memory".to_owned(), Quantity("16Mi".to_owned())),
        ])
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(PROBE_PREFIX.to_owned()),
            labels: Some(BTreeMap::from([(
                PROBE_LABEL.to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(service_account.to_owned()),
            restart_policy: Some("Never".to_owned()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(65532),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: "probe".to_owned(),
                image: Some(image.to_owned()),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".to_owned()]),
                        ..Capabilities::default()
                    }),
                    ..SecurityContext::default()
                }),
                resources: Some(ResourceRequirements {
                    requests: Some(small()),
                    limits: Some(small()),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// What the webhook must have injected into the probe pod.
pub struct Expected<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub role_arn: &'a str,
    pub audience: &'a str,
}

/// The last answer to the probe and how long it took to get one that was mutated.
pub struct Probed {
    pub answer: Result<Created, Refused>,
    pub attempts: u32,
    pub elapsed: Duration,
}

/// Dry-run creates the probe pod, again every two seconds for up to `retry_for` while it is not
/// mutated as expected (a webhook still starting right after `helm install`).
pub async fn probe(
    client: &kube::Client,
    expected: &Expected<'_>,
    image: &str,
    limit: Duration,
    retry_for: Duration,
) -> Probed {
    let pod = probe_pod(expected.service_account, image);
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let answer = create(client, expected.namespace, &pod, limit).await;
        let done = matches!(&answer, Ok(created) if injected(&created.pod, expected).is_ok());
        if done || started.elapsed() + RETRY_PAUSE > retry_for {
            return Probed {
                answer,
                attempts,
                elapsed: started.elapsed(),
            };
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// `webhook.dry-run`: whether the probe pod came back with the token volume and variables, and
/// if not the likely cause, from the API server's answer and what `webhook.config` found.
pub fn verdict(probed: &Probed, expected: &Expected<'_>, webhooks: &Webhooks) -> Check {
    const ID: &str = "webhook.dry-run";
    let who = format!("{}/{}", expected.namespace, expected.service_account);
    let tries = if probed.attempts > 1 {
        format!(
            " (after {} attempts in {}s)",
            probed.attempts,
            probed.elapsed.as_secs()
        )
    } else {
        String::new()
    };
    let by = match webhooks {
        Webhooks::Selected(s) => format!(" by {}", s.name()),
        _ => String::new(),
    };
    let created = match &probed.answer {
        Ok(created) => created,
        Err(refused) => {
            let mut check = refusal(&who, refused, webhooks);
            check.message.push_str(&tries);
            check.message.push_str(&warned(&refused.warnings));
            return check;
        }
    };
    let warnings = warned(&created.warnings);
    let mut check = match injected(&created.pod, expected) {
        Ok(summary) if created.warnings.is_empty() => Check::ok(
            ID,
            format!("a pod of {who} created now (dry run) is mutated{by}: {summary}"),
        ),
        Ok(summary) => Check::warn(
            ID,
            format!("a pod of {who} created now (dry run) is mutated{by}: {summary}"),
            "read the warnings: the webhook or the API server found something questionable",
        ),
        Err(Missing::Volume) => not_mutated(&who, webhooks),
        Err(Missing::Parts(parts)) => Check::fail(
            ID,
            format!(
                "a pod of {who} created now (dry run) is mutated only in part{by}: {}",
                parts.join("; ")
            ),
            "give doctor the --annotation-prefix and --token-audience that serve runs with (the chart passes both); otherwise another webhook changed the pod, or see the webhook's logs",
        ),
    };
    check.message.push_str(&tries);
    check.message.push_str(&warnings);
    check
}

/// `; admission warnings: "…", "…"`, or nothing.
fn warned(warnings: &[String]) -> String {
    if warnings.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = warnings.iter().map(|w| format!("{w:?}")).collect();
    format!("; admission warnings: {}", quoted.join(", "))
}

/// Why the probe came back without a token volume.
fn not_mutated(who: &str, webhooks: &Webhooks) -> Check {
    const ID: &str = "webhook.dry-run";
    let what = format!("a pod of {who} created now (dry run) is not mutated");
    let start = "kubectl get pods -A -l app.kubernetes.io/name=irsa-webhook: are the webhook's pods ready? (kubectl describe pod shows a missing image, ErrImagePull or ErrImageNeverPull); then their logs";
    match webhooks {
        Webhooks::Selected(s) if s.failure_policy() == "Ignore" => Check::fail(
            ID,
            format!(
                "{what}, although {} selects it: the API server could not call the webhook and, with failurePolicy Ignore, let the pod through unmutated (see webhook.endpoints and webhook.certificate)",
                s.name()
            ),
            start,
        ),
        Webhooks::Selected(s) => Check::fail(
            ID,
            format!(
                "{what}, although {} selects it and answered: it decided not to mutate",
                s.name()
            ),
            "give doctor the --annotation-prefix that serve runs with, and read the webhook's logs",
        ),
        Webhooks::NoneSelects => Check::fail(
            ID,
            format!("{what}: no webhook is called for it (see webhook.config)"),
            "install the webhook, or make its namespaceSelector select this namespace",
        ),
        Webhooks::Unknown => Check::fail(
            ID,
            format!(
                "{what}: either the webhook could not be called and its failurePolicy is Ignore (not running, no ready endpoints, a caBundle that does not trust its certificate), or no webhook selects this namespace"
            ),
            format!(
                "{start}; kubectl get mutatingwebhookconfigurations -o yaml for the namespaceSelector"
            ),
        ),
    }
}

/// Why the API server refused the probe, with the fix for the usual causes.
fn refusal(who: &str, refused: &Refused, webhooks: &Webhooks) -> Check {
    const ID: &str = "webhook.dry-run";
    let said = &refused.message;
    let what = format!("the API server refused a pod of {who} (dry run): {said}");
    let has = |needles: &[&str]| needles.iter().any(|n| said.contains(n));
    let Some(code) = refused.code else {
        return Check::fail(
            ID,
            format!("cannot create a pod of {who} (dry run): {said}"),
            "check that the API server is reachable from here (--kubeconfig, or in-cluster)",
        );
    };
    let webhook_failed = has(&["failed calling webhook", "failed to call webhook"]);
    if code == 403 && !webhook_failed && has(&["violates PodSecurity"]) {
        return Check::fail(
            ID,
            what,
            "the probe pod meets the restricted Pod Security Standard; check the namespace's pod-security labels",
        );
    }
    if code == 403 && !webhook_failed && !has(&["admission webhook"]) {
        return Check::fail(
            ID,
            what,
            format!(
                "allow this identity to create pods in {} (a dry run stores nothing)",
                who.split('/').next().unwrap_or_default()
            ),
        );
    }
    if !webhook_failed {
        return Check::fail(
            ID,
            what,
            "another admission step refused the probe pod: read the message (a policy engine may want another --probe-image)",
        );
    }
    let policy = match webhooks {
        Webhooks::Selected(s) => format!(" ({} has failurePolicy Fail)", s.name()),
        _ => " (failurePolicy Fail)".into(),
    };
    let fix = if has(&["x509", "certificate", "tls:"]) {
        "the webhook configuration's caBundle does not trust the webhook's serving certificate: with the chart's certificates.mode=self the webhook writes it at start-up (check its pods run and their logs); with certManager check cert-manager's CA injector; with secret, certificates.secret.caBundle must be the CA that signed the Secret"
    } else if has(&[
        "no endpoints available",
        "connection refused",
        "not found",
        "no route to host",
    ]) {
        "the webhook is not running: kubectl get pods -A -l app.kubernetes.io/name=irsa-webhook; kubectl describe pod shows a missing image (ErrImagePull, ErrImageNeverPull) or a crash"
    } else if has(&[
        "deadline exceeded",
        "Client.Timeout",
        "i/o timeout",
        "timed out",
    ]) {
        "the webhook did not answer in time: a NetworkPolicy or firewall between the API server and the webhook's pods (their https port), or an overloaded webhook"
    } else {
        "read the API server's message: it says why it could not call the webhook"
    };
    Check::fail(
        ID,
        format!(
            "the API server could not call the webhook for a pod of {who}{policy} and refused it: {said}"
        ),
        fix,
    )
}

/// What is missing from a pod the webhook should have mutated.
#[derive(Debug, PartialEq, Eq)]
enum Missing {
    /// No token volume: not mutated at all.
    Volume,
    /// Mutated, but these are missing or different.
    Parts(Vec<String>),
}

/// The summary of the injection when the first container has everything `expected` says.
fn injected(pod: &Pod, expected: &Expected<'_>) -> Result<String, Missing> {
    let spec = pod.spec.as_ref().ok_or(Missing::Volume)?;
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == VOLUME_NAME)
        .ok_or(Missing::Volume)?;
    let mut parts = Vec::new();
    let token = volume.projected.as_ref().and_then(|p| {
        p.sources
            .iter()
            .flatten()
            .find_map(|s| s.service_account_token.as_ref())
    });
    let Some(token) = token else {
        return Err(Missing::Parts(vec![format!(
            "the {VOLUME_NAME} volume is not a projected ServiceAccount token"
        )]));
    };
    let audience = token.audience.as_deref().unwrap_or_default();
    if audience != expected.audience {
        parts.push(format!(
            "the token's audience is {audience:?}, not {:?}",
            expected.audience
        ));
    }
    let Some(container) = spec.containers.first() else {
        return Err(Missing::Parts(vec!["the pod has no container".into()]));
    };
    let env = |name: &str| env_value(container, name);
    match env("AWS_ROLE_ARN") {
        Some(arn) if arn == expected.role_arn => {}
        Some(arn) => parts.push(format!(
            "AWS_ROLE_ARN is {arn:?}, not the ServiceAccount's {:?}",
            expected.role_arn
        )),
        None => parts.push("no AWS_ROLE_ARN".into()),
    }
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == VOLUME_NAME);
    let file = mount.map(|m| format!("{}/{}", m.mount_path.trim_end_matches('/'), token.path));
    match (&file, env("AWS_WEB_IDENTITY_TOKEN_FILE")) {
        (None, _) => parts.push(format!(
            "the container does not mount the {VOLUME_NAME} volume"
        )),
        (Some(_), None) => parts.push("no AWS_WEB_IDENTITY_TOKEN_FILE".into()),
        (Some(file), Some(set)) if set != file.as_str() => parts.push(format!(
            "AWS_WEB_IDENTITY_TOKEN_FILE is {set:?}, but the token is mounted at {file:?}"
        )),
        _ => {}
    }
    if !parts.is_empty() {
        return Err(Missing::Parts(parts));
    }
    Ok(format!(
        "{VOLUME_NAME} volume with audience {audience:?}, AWS_ROLE_ARN={}, AWS_WEB_IDENTITY_TOKEN_FILE={}",
        expected.role_arn,
        file.unwrap_or_default()
    ))
}

fn env_value<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .map(|v| v.value.as_deref().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::super::report::Status;
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;
    use serde_json::json;

    const ARN: &str = "arn:aws:iam::111122223333:role/app";

    fn expected() -> Expected<'static> {
        Expected {
            namespace: "team",
            service_account: "app",
            role_arn: ARN,
            audience: "sts.amazonaws.com",
        }
    }

    /// The probe pod as the webhook returns it (`audience`, env and mount as given).
    fn mutated(audience: &str, env: Value, mount: Option<&str>) -> Pod {
        let mut pod = serde_json::to_value(probe_pod("app", "pause")).unwrap();
        pod["spec"]["volumes"] = json!([{"name": VOLUME_NAME, "projected": {"sources": [
            {"serviceAccountToken": {"audience": audience, "expirationSeconds": 86400, "path": "token"}}]}}]);
        pod["spec"]["containers"][0]["env"] = env;
        if let Some(path) = mount {
            pod["spec"]["containers"][0]["volumeMounts"] =
                json!([{"name": VOLUME_NAME, "mountPath": path, "readOnly": true}]);
        }
        serde_json::from_value(pod).unwrap()
    }

    fn full() -> Pod {
        mutated(
            "sts.amazonaws.com",
            json!([{"name": "AWS_ROLE_ARN", "value": ARN},
                {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}]),
            Some("/var/run/secrets/eks.amazonaws.com/serviceaccount"),
        )
    }

    fn probed(answer: Result<Created, Refused>) -> Probed {
        Probed {
            answer,
            attempts: 1,
            elapsed: Duration::ZERO,
        }
    }

    fn created(pod: Pod, warnings: &[&str]) -> Probed {
        probed(Ok(Created {
            pod,
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
        }))
    }

    fn refused(code: u16, message: &str) -> Probed {
        probed(Err(Refused {
            code: Some(code),
            message: message.into(),
            warnings: Vec::new(),
        }))
    }

    fn selected(policy: &str) -> Webhooks {
        let webhook: MutatingWebhook = serde_json::from_value(json!({
            "name": "pods.irsa-webhook.io", "clientConfig": {}, "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "failurePolicy": policy}))
        .unwrap();
        Webhooks::Selected(Box::new(super::super::webhook::Selected {
            config: "irsa-webhook".into(),
            webhook,
        }))
    }

    fn judge(probed: &Probed, webhooks: &Webhooks) -> Check {
        let check = verdict(probed, &expected(), webhooks);
        assert_eq!(check.id, "webhook.dry-run");
        if check.status != Status::Ok {
            assert!(
                check.fix.as_ref().is_some_and(|f| !f.is_empty()),
                "{check:?}"
            );
        }
        check
    }

    #[test]
    fn a_fully_mutated_probe_passes_and_names_what_was_injected() {
        let check = judge(&created(full(), &[]), &selected("Ignore"));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(
            check.message,
            "a pod of team/app created now (dry run) is mutated by irsa-webhook/pods.irsa-webhook.io: \
             aws-iam-token volume with audience \"sts.amazonaws.com\", AWS_ROLE_ARN=arn:aws:iam::111122223333:role/app, \
             AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
        );
        // Warnings that came with it are shown, and make it a warning.
        let check = judge(
            &created(full(), &["token expiration 60 is below 600: raised"]),
            &Webhooks::Unknown,
        );
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(
            check
                .message
                .ends_with("; admission warnings: \"token expiration 60 is below 600: raised\""),
            "{check:?}"
        );
    }

    #[test]
    fn an_unmutated_probe_names_the_likely_cause_from_what_is_known_of_the_webhook() {
        let plain = probe_pod("app", "pause");
        let check = judge(&created(plain.clone(), &[]), &selected("Ignore"));
        assert_eq!(check.status, Status::Fail);
        assert!(check.message.contains("could not call the webhook and, with failurePolicy Ignore, let the pod through unmutated"), "{check:?}");
        assert!(check.fix.as_deref().unwrap().contains("ErrImageNeverPull"));

        let check = judge(
            &created(
                plain.clone(),
                &["ServiceAccount team/app could not be read"],
            ),
            &selected("Fail"),
        );
        assert!(
            check.message.contains("answered: it decided not to mutate"),
            "{check:?}"
        );
        assert!(
            check
                .message
                .ends_with("; admission warnings: \"ServiceAccount team/app could not be read\""),
            "{check:?}"
        );

        let check = judge(&created(plain.clone(), &[]), &Webhooks::NoneSelects);
        assert!(
            check.message.contains("no webhook is called for it"),
            "{check:?}"
        );

        // A namespaced Role cannot read the configurations: both causes are named.
        let check = judge(&created(plain, &[]), &Webhooks::Unknown);
        assert!(
            check.message.contains("failurePolicy is Ignore"),
            "{check:?}"
        );
        assert!(
            check.message.contains("no webhook selects this namespace"),
            "{check:?}"
        );
    }

    #[test]
    fn a_partly_mutated_probe_lists_every_difference() {
        let pod = mutated(
            "other",
            json!([{"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/old"},
                {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/elsewhere/token"}]),
            Some("/var/run/secrets/eks.amazonaws.com/serviceaccount/"),
        );
        let check = judge(&created(pod, &[]), &Webhooks::Unknown);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.message.ends_with(
                "is mutated only in part: the token's audience is \"other\", not \"sts.amazonaws.com\"; \
                 AWS_ROLE_ARN is \"arn:aws:iam::111122223333:role/old\", not the ServiceAccount's \"arn:aws:iam::111122223333:role/app\"; \
                 AWS_WEB_IDENTITY_TOKEN_FILE is \"/elsewhere/token\", but the token is mounted at \"/var/run/secrets/eks.amazonaws.com/serviceaccount/token\""
            ),
            "{check:?}"
        );
        assert!(check.fix.as_deref().unwrap().contains("--token-audience"));

        let bare = mutated("sts.amazonaws.com", json!([]), None);
        let check = judge(&created(bare, &[]), &Webhooks::Unknown);
        assert!(
            check.message.ends_with(
                "no AWS_ROLE_ARN; the container does not mount the aws-iam-token volume"
            ),
            "{check:?}"
        );
    }

    #[test]
    fn refusals_name_the_webhook_failure_and_its_fix() {
        let call = |tail: &str| {
            format!(
                "Internal error occurred: failed calling webhook \"pods.irsa-webhook.io\": failed to call webhook: Post \"https://irsa-webhook.irsa-system.svc:443/mutate?timeout=5s\": {tail}"
            )
        };
        for (tail, fix) in [
            (
                "tls: failed to verify certificate: x509: certificate signed by unknown authority",
                "caBundle does not trust",
            ),
            (
                "no endpoints available for service \"irsa-webhook\"",
                "ErrImagePull",
            ),
            (
                "dial tcp 10.0.0.9:8443: connect: connection refused",
                "the webhook is not running",
            ),
            ("context deadline exceeded", "NetworkPolicy"),
            ("something new", "read the API server's message"),
        ] {
            let check = judge(&refused(500, &call(tail)), &selected("Fail"));
            assert_eq!(check.status, Status::Fail);
            assert!(
                check.message.starts_with(
                    "the API server could not call the webhook for a pod of team/app (irsa-webhook/pods.irsa-webhook.io has failurePolicy Fail) and refused it: Internal error"
                ) && check.message.contains(tail),
                "{check:?}"
            );
            assert!(
                check.fix.as_ref().unwrap().contains(fix),
                "{tail}: {check:?}"
            );
        }

        // Refusals before any webhook was called.
        for (code, message, fix) in [
            (
                403,
                "pods \"irsa-doctor-probe-\" is forbidden: User \"system:serviceaccount:team:runner\" cannot create resource \"pods\" in API group \"\" in the namespace \"team\"",
                "allow this identity to create pods in team",
            ),
            (
                403,
                "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true",
                "pod-security labels",
            ),
            (
                400,
                "admission webhook \"validate.kyverno.svc\" denied the request: image registry not allowed",
                "--probe-image",
            ),
        ] {
            let check = judge(&refused(code, message), &Webhooks::Unknown);
            assert!(check.message.ends_with(message), "{check:?}");
            assert!(check.fix.as_deref().unwrap().contains(fix), "{check:?}");
        }
        let check = judge(
            &probed(Err(Refused {
                code: None,
                message: "no answer within 10s".into(),
                warnings: vec![],
            })),
            &Webhooks::Unknown,
        );
        assert!(
            check
                .message
                .starts_with("cannot create a pod of team/app (dry run): no answer"),
            "{check:?}"
        );
    }

    #[test]
    fn retries_are_counted_in_the_message() {
        let mut probed = created(full(), &[]);
        probed.attempts = 4;
        probed.elapsed = Duration::from_millis(6200);
        let check = judge(&probed, &Webhooks::Unknown);
        assert!(
            check.message.ends_with(" (after 4 attempts in 6s)"),
            "{check:?}"
        );
    }

    #[test]
    fn warning_headers_are_unquoted() {
        assert_eq!(
            warning_text(r#"299 - "a \"quoted\" \\ text""#),
            r#"a "quoted" \ text"#
        );
        assert_eq!(warning_text("299 - plain"), "plain");
        assert_eq!(warning_text("odd"), "odd");
    }

    #[test]
    fn the_probe_pod_is_labelled_for_selection_and_meets_restricted() {
        let pod = serde_json::to_value(probe_pod("app", "registry.example/irsa:1")).unwrap();
        assert_eq!(pod["metadata"]["labels"][PROBE_LABEL], "true");
        assert_eq!(pod["metadata"]["generateName"], PROBE_PREFIX);
        assert_eq!(pod["spec"]["serviceAccountName"], "app");
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["image"], "registry.example/irsa:1");
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["spec"],
            json!({
                "serviceAccountName": "app",
                "restartPolicy": "Never",
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [{
                    "name": "probe",
                    "image": "registry.example/irsa:1",
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"cpu": "10m", "memory": "16Mi"},
                    },
                }],
            })
        );
    }
}
