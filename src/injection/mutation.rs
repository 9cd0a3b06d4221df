//! The pure decision: pod + ServiceAccount + settings → JSON-patch `add` ops, warnings, decision.
//!
//! Only `add` ops are produced, at targeted paths (`/spec/containers/0/env/-`, or the whole array
//! where the pod has none), so fields unknown to us survive and a second run adds nothing.

use std::borrow::Cow;
use std::collections::HashSet;

use json_patch::{Patch, PatchOperation};
use serde_json::{Value, json};

use crate::injection::clouds::{self, azure, gcp};
use crate::injection::config::{InjectionConfig, On, TOKEN_FILE, VOLUME_NAME};
use crate::injection::identity::{self, Identity, SaAnnotations};
use crate::injection::patch::{self, ContainerAt, push_adds};
use crate::injection::pod::{Container, PodView};

const ENV_REGIONAL_STS: &str = "AWS_STS_REGIONAL_ENDPOINTS";
const ENV_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
const ENV_REGION: &str = "AWS_REGION";
const ENV_ROLE_ARN: &str = "AWS_ROLE_ARN";
const ENV_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
const ENV_SESSION_NAME: &str = "AWS_ROLE_SESSION_NAME";
const ENV_STS_ENDPOINT: &str = "AWS_ENDPOINT_URL_STS";

/// What is known about the pod's ServiceAccount.
#[derive(Debug, Clone, Copy)]
pub enum ServiceAccount<'a> {
    /// It exists; `None` when it has no role annotation.
    Found(Option<&'a SaAnnotations>),
    /// It does not exist.
    NotFound,
    /// It could not be looked up (the reason is shown to the user).
    Unavailable(&'a str),
}

/// Why a pod was or was not changed; also the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// A patch was produced.
    Mutated,
    /// Everything was already injected (reinvocation or a re-applied pod).
    AlreadyMutated,
    /// The ServiceAccount has no (or an empty) role annotation.
    NoRole,
    /// The pod opted out by annotation.
    OptedOut,
    /// Every container was excluded by the skip/include annotations.
    NoContainers,
    /// A foreign volume already uses our volume name.
    VolumeConflict,
    /// The ServiceAccount does not exist.
    ServiceAccountNotFound,
    /// The ServiceAccount could not be looked up.
    ServiceAccountUnavailable,
    /// The pod is beyond the webhook's limits (containers, list lengths, answer size).
    TooLarge,
}

impl Decision {
    /// Every decision, for pre-registering metrics.
    pub const ALL: [Decision; 9] = [
        Decision::Mutated,
        Decision::AlreadyMutated,
        Decision::NoRole,
        Decision::OptedOut,
        Decision::NoContainers,
        Decision::VolumeConflict,
        Decision::ServiceAccountNotFound,
        Decision::ServiceAccountUnavailable,
        Decision::TooLarge,
    ];

    /// Stable snake_case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Mutated => "mutated",
            Decision::AlreadyMutated => "already_mutated",
            Decision::NoRole => "no_role",
            Decision::OptedOut => "opted_out",
            Decision::NoContainers => "no_containers",
            Decision::VolumeConflict => "volume_conflict",
            Decision::ServiceAccountNotFound => "service_account_not_found",
            Decision::ServiceAccountUnavailable => "service_account_unavailable",
            Decision::TooLarge => "too_large",
        }
    }
}

/// The result of [`mutate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub decision: Decision,
    /// `add` ops relative to the pod; empty unless `decision` is `Mutated`.
    pub patch: Patch,
    /// Messages for the user who creates the pod.
    pub warnings: Vec<String>,
    /// The role injected, for logs.
    pub role_arn: Option<String>,
}

impl Outcome {
    /// This outcome without its patch or warnings, as [`Decision::TooLarge`] with `why`.
    pub fn withdrawn(self, why: String) -> Self {
        Self {
            decision: Decision::TooLarge,
            patch: Patch(Vec::new()),
            warnings: vec![why],
            role_arn: self.role_arn,
        }
    }
}

/// Decides what to inject into `pod`, whose ServiceAccount is `sa_key` (`namespace/name`):
/// AWS as the reference webhook does, then the other clouds the pod and its ServiceAccount ask
/// for.
pub fn mutate(
    pod: &PodView<'_>,
    sa_key: &str,
    sa: ServiceAccount<'_>,
    cfg: &InjectionConfig,
) -> Outcome {
    let mut outcome = mutate_aws(pod, sa_key, sa, cfg);
    let clouds = match sa {
        ServiceAccount::Found(Some(sa)) => sa.clouds(),
        _ => None,
    };
    let warnings = &mut outcome.warnings;
    let injections = [
        azure::injection(pod, clouds.map(|c| &c.azure), &cfg.azure, sa_key, warnings),
        gcp::injection(pod, clouds.map(|c| &c.gcp), &cfg.gcp, sa_key, warnings),
    ];
    let wanted: Vec<_> = injections.into_iter().flatten().collect();
    if wanted.is_empty() || outcome.decision == Decision::TooLarge {
        return outcome;
    }
    if let Some(limit) = pod.exceeded_limits() {
        warnings.push(format!(
            "the pod has {limit}, beyond what the webhook patches: no cloud credentials injected"
        ));
        outcome.patch = Patch(Vec::new());
        outcome.decision = Decision::TooLarge;
        return outcome;
    }
    let before = outcome.patch.0.len();
    let mut applied = false;
    for injection in &wanted {
        applied |= clouds::apply(pod, injection, &mut outcome.patch.0, &mut outcome.warnings);
    }
    outcome.decision = match (outcome.decision, outcome.patch.0.len() > before) {
        (_, true) => Decision::Mutated,
        (Decision::Mutated | Decision::AlreadyMutated, false) => outcome.decision,
        (_, false) if applied => Decision::AlreadyMutated,
        (decision, false) => decision,
    };
    outcome
}

/// The AWS injection, exactly as the reference webhook decides it.
fn mutate_aws(
    pod: &PodView<'_>,
    sa_key: &str,
    sa: ServiceAccount<'_>,
    cfg: &InjectionConfig,
) -> Outcome {
    let mut warnings = Vec::new();
    let decided = |decision, warnings| Outcome {
        decision,
        patch: Patch(Vec::new()),
        warnings,
        role_arn: None,
    };

    unknown_annotations(pod, cfg, &mut warnings);
    if opted_out(pod, cfg, &mut warnings) {
        return decided(Decision::OptedOut, warnings);
    }
    let sa = match sa {
        ServiceAccount::Found(Some(sa)) => sa,
        ServiceAccount::Found(None) => return decided(Decision::NoRole, warnings),
        ServiceAccount::NotFound => {
            warnings.push(format!(
                "ServiceAccount {sa_key} not found: AWS credentials not injected"
            ));
            return decided(Decision::ServiceAccountNotFound, warnings);
        }
        ServiceAccount::Unavailable(reason) => {
            warnings.push(format!(
                "ServiceAccount {sa_key} could not be read ({reason}): AWS credentials not injected"
            ));
            return decided(Decision::ServiceAccountUnavailable, warnings);
        }
    };
    let Some(identity) = identity::resolve(sa_key, sa, pod, cfg, &mut warnings) else {
        return decided(Decision::NoRole, warnings);
    };
    if let Some(limit) = pod.exceeded_limits() {
        warnings.push(format!(
            "the pod has {limit}, beyond what the webhook patches: AWS credentials not injected"
        ));
        return decided(Decision::TooLarge, warnings);
    }

    let volume_present = match find_volume(pod, &identity, &mut warnings) {
        Ok(present) => present,
        Err(()) => return decided(Decision::VolumeConflict, warnings),
    };

    let selection = Selection::new(pod, cfg, &mut warnings);
    let token_file = if pod.is_windows() {
        cfg.windows_token_file()
    } else {
        cfg.token_file()
    };
    let mut ops = Vec::new();
    let mut selected = 0;
    let lists = [
        ("initContainers", &*pod.spec.init_containers),
        ("containers", &*pod.spec.containers),
    ];
    for (list, containers) in lists {
        for (index, container) in containers.iter().enumerate() {
            if !selection.includes(&container.name) {
                continue;
            }
            selected += 1;
            let at = ContainerAt { list, index };
            inject_env(
                &at,
                container,
                &identity,
                &token_file,
                &mut ops,
                &mut warnings,
            );
            inject_mount(&at, container, cfg, &mut ops, &mut warnings);
        }
    }
    if selected == 0 {
        return decided(Decision::NoContainers, warnings);
    }
    if !volume_present {
        ops.insert(0, add_volume(pod, &identity));
    }
    Outcome {
        decision: if ops.is_empty() {
            Decision::AlreadyMutated
        } else {
            Decision::Mutated
        },
        patch: Patch(ops),
        warnings,
        role_arn: Some(identity.role_arn),
    }
}

/// Most unknown annotation keys under our prefix a pod is warned about.
const MAX_UNKNOWN_KEYS: usize = 5;

/// A warning for each annotation under our prefix that the webhook does not read on pods
/// (a misspelling, or a ServiceAccount key), in key order, at most [`MAX_UNKNOWN_KEYS`].
fn unknown_annotations(pod: &PodView<'_>, cfg: &InjectionConfig, warnings: &mut Vec<String>) {
    let mut ours: Vec<&str> = pod
        .metadata
        .annotations
        .keys()
        .map(|k| k.as_ref())
        .filter(|k| cfg.keys.is_ours(k))
        .collect();
    if ours.is_empty() {
        return;
    }
    ours.sort_unstable();
    let unknown = ours
        .iter()
        .filter_map(|k| cfg.keys.unknown(k, On::Pod))
        .take(MAX_UNKNOWN_KEYS);
    warnings.extend(unknown);
}

/// `true` when the pod carries the opt-out annotation with value `true`.
fn opted_out(pod: &PodView<'_>, cfg: &InjectionConfig, warnings: &mut Vec<String>) -> bool {
    let key = &cfg.keys.skip_pod;
    match pod.annotation(key).map(str::trim) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            warnings.push(format!(
                "{key}={v:?} is not \"true\": the pod is not opted out"
            ));
            false
        }
    }
}

/// Whether our token volume is already present; `Err` when a foreign volume has its name.
fn find_volume(
    pod: &PodView<'_>,
    identity: &Identity,
    warnings: &mut Vec<String>,
) -> Result<bool, ()> {
    let Some(volume) = pod
        .spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == VOLUME_NAME)
    else {
        return Ok(false);
    };
    match volume.token_projection() {
        Some(token) if token.path == TOKEN_FILE => {
            let audience = token.audience.as_deref().unwrap_or("");
            if audience != identity.audience {
                warnings.push(format!(
                    "the pod already has volume {VOLUME_NAME} with audience {audience:?}, kept although the ServiceAccount asks for {:?}",
                    identity.audience
                ));
            }
            Ok(true)
        }
        _ => {
            warnings.push(format!(
                "the pod already has a volume named {VOLUME_NAME} that is not a service-account token: AWS credentials not injected; rename that volume"
            ));
            Err(())
        }
    }
}

/// Which containers the skip/include annotations leave in. The lists are sets, so the cost is
/// linear in the annotation and the containers, never their product.
struct Selection<'p> {
    skip: HashSet<Cow<'p, str>>,
    include: Option<HashSet<Cow<'p, str>>>,
}

/// Most unknown names a skip/include warning spells out.
const MAX_NAMED_IN_WARNING: usize = 10;

impl<'p> Selection<'p> {
    fn new(pod: &'p PodView<'_>, cfg: &InjectionConfig, warnings: &mut Vec<String>) -> Self {
        let names: HashSet<&str> = pod
            .spec
            .init_containers
            .iter()
            .chain(pod.spec.containers.iter())
            .map(|c| c.name.as_ref())
            .collect();
        let list = |key: &str, warnings: &mut Vec<String>| {
            let listed: HashSet<Cow<str>> = csv_names(pod.annotation(key)?).collect();
            let unknown: Vec<Cow<str>> = csv_names(pod.annotation(key)?)
                .filter(|n| !names.contains(n.as_ref()))
                .collect();
            if !unknown.is_empty() {
                let shown = unknown[..unknown.len().min(MAX_NAMED_IN_WARNING)].join(", ");
                let more = unknown.len().saturating_sub(MAX_NAMED_IN_WARNING);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                warnings.push(format!(
                    "{key} names no container of this pod: {shown}{more}"
                ));
            }
            Some(listed)
        };
        let skip = list(&cfg.keys.skip_containers, warnings).unwrap_or_default();
        let include = list(&cfg.keys.include_containers, warnings);
        if include.as_ref().is_some_and(HashSet::is_empty) {
            warnings.push(format!(
                "{} is empty: no container injected",
                cfg.keys.include_containers
            ));
        }
        Self { skip, include }
    }

    fn includes(&self, name: &str) -> bool {
        !self.skip.contains(name)
            && self
                .include
                .as_ref()
                .is_none_or(|include| include.contains(name))
    }
}

/// The names of a list annotation, read as one CSV record as the reference webhook reads it:
/// comma-separated, a field may be double-quoted (`""` is a quote inside it), whitespace around
/// a name is trimmed, empty names are dropped.
fn csv_names(value: &str) -> impl Iterator<Item = Cow<'_, str>> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let field = rest?.trim_start();
        let (name, after) = match field.strip_prefix('"') {
            Some(quoted) => {
                let mut name = String::new();
                let mut chars = quoted.char_indices();
                let mut after = "";
                while let Some((i, c)) = chars.next() {
                    if c != '"' {
                        name.push(c);
                    } else if quoted[i + 1..].starts_with('"') {
                        name.push('"');
                        chars.next();
                    } else {
                        after = &quoted[i + 1..];
                        break;
                    }
                }
                (Cow::Owned(name), after.split_once(',').map(|(_, r)| r))
            }
            None => match field.split_once(',') {
                Some((name, r)) => (Cow::Borrowed(name), Some(r)),
                None => (Cow::Borrowed(field), None),
            },
        };
        rest = after;
        Some(match name {
            Cow::Borrowed(n) => Cow::Borrowed(n.trim()),
            Cow::Owned(n) => Cow::Owned(n.trim().to_owned()),
        })
    })
    .filter(|n| !n.is_empty())
}

fn inject_env(
    at: &ContainerAt,
    container: &Container<'_>,
    identity: &Identity,
    token_file: &str,
    ops: &mut Vec<PatchOperation>,
    warnings: &mut Vec<String>,
) {
    let defined = |name: &str| container.env.iter().flatten().any(|e| e.name == name);
    let mut vars: Vec<(&str, &str)> = Vec::with_capacity(5);
    if identity.regional_sts && !defined(ENV_REGIONAL_STS) {
        vars.push((ENV_REGIONAL_STS, "regional"));
    }
    if let Some(region) = &identity.region
        && !defined(ENV_DEFAULT_REGION)
        && !defined(ENV_REGION)
    {
        vars.push((ENV_DEFAULT_REGION, region));
        vars.push((ENV_REGION, region));
    }
    match (defined(ENV_ROLE_ARN), defined(ENV_TOKEN_FILE)) {
        (false, false) => {
            vars.push((ENV_ROLE_ARN, &identity.role_arn));
            vars.push((ENV_TOKEN_FILE, token_file));
        }
        (true, true) => {}
        (role, _) => {
            let (has, lacks) = if role {
                (ENV_ROLE_ARN, ENV_TOKEN_FILE)
            } else {
                (ENV_TOKEN_FILE, ENV_ROLE_ARN)
            };
            warnings.push(format!(
                "container {} sets {has} but not {lacks}: neither injected",
                container.name
            ));
        }
    }
    let value = |(name, value): (&str, &str)| json!({ "name": name, "value": value });
    let mut vars: Vec<Value> = vars.into_iter().map(value).collect();
    // Opt-in additions, after the reference webhook's variables so their order is unchanged.
    if identity.session_name && !defined(ENV_SESSION_NAME) {
        vars.push(json!({"name": ENV_SESSION_NAME,
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}));
    }
    if let Some(endpoint) = &identity.sts_endpoint
        && !defined(ENV_STS_ENDPOINT)
    {
        vars.push(json!({"name": ENV_STS_ENDPOINT, "value": endpoint}));
    }
    push_adds(at, "env", container.env.is_some(), vars, ops);
}

fn inject_mount(
    at: &ContainerAt,
    container: &Container<'_>,
    cfg: &InjectionConfig,
    ops: &mut Vec<PatchOperation>,
    warnings: &mut Vec<String>,
) {
    let mounts = || container.volume_mounts.iter().flatten();
    let at_our_path = |path: &str| path.trim_end_matches('/') == cfg.mount_path;
    if let Some(mount) = mounts().find(|m| m.name == VOLUME_NAME) {
        if !at_our_path(&mount.mount_path) {
            warnings.push(format!(
                "container {} already mounts {VOLUME_NAME} at {}: not mounted again",
                container.name, mount.mount_path
            ));
        }
        return;
    }
    if let Some(mount) = mounts().find(|m| at_our_path(&m.mount_path)) {
        warnings.push(format!(
            "container {} already mounts volume {} at {}: token not mounted",
            container.name, mount.name, cfg.mount_path
        ));
        return;
    }
    let mount = json!({ "name": VOLUME_NAME, "mountPath": cfg.mount_path, "readOnly": true });
    push_adds(
        at,
        "volumeMounts",
        container.volume_mounts.is_some(),
        [mount],
        ops,
    );
}

fn add_volume(pod: &PodView<'_>, identity: &Identity) -> PatchOperation {
    let volume = json!({
        "name": VOLUME_NAME,
        "projected": { "sources": [{ "serviceAccountToken": {
            "audience": identity.audience,
            "expirationSeconds": identity.expiration,
            "path": TOKEN_FILE,
        }}]},
    });
    patch::add_volume(pod.spec.volumes.is_some(), volume)
}

#[cfg(test)]
#[path = "mutation_tests.rs"]
mod tests;
