//! Which AWS identity a pod gets: ServiceAccount and pod annotations resolved against the defaults.

use crate::injection::clouds::azure::{self, AzureSa};
use crate::injection::clouds::gcp::{self, GcpSa};
use crate::injection::config::{
    InjectionConfig, On, check_endpoint, is_account_id, is_region, parse_go_bool,
};
use crate::injection::lifetime::{MAX_TOKEN_EXPIRATION, MIN_TOKEN_EXPIRATION};
use crate::injection::pod::PodView;

/// The injection-relevant annotations of one ServiceAccount, kept compact in the index: most
/// ServiceAccounts carry a role ARN and nothing else, so everything else sits behind one box
/// (24 bytes per stored ServiceAccount, the box only when there is more).
///
/// Values are stored raw and judged per request, so a warning reaches the user who creates the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaAnnotations {
    /// `None` when only other annotations were found (a misspelt role-arn, say).
    pub role_arn: Option<Box<str>>,
    more: Option<Box<SaExtras>>,
}

/// The rarer annotations of a ServiceAccount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SaExtras {
    audience: Option<Box<str>>,
    sts_regional_endpoints: Option<Box<str>>,
    token_expiration: Option<Box<str>>,
    region: Option<Box<str>>,
    sts_endpoint: Option<Box<str>>,
    /// Azure and Google Cloud annotations.
    clouds: Option<CloudAnnotations>,
    /// Warnings about keys under our prefix this webhook does not read on a ServiceAccount.
    unknown: Box<[Box<str>]>,
}

/// Most unknown keys of one ServiceAccount that are kept and warned about.
const MAX_UNKNOWN_KEYS: usize = 5;

/// The annotations of the other clouds' profiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudAnnotations {
    pub azure: AzureSa,
    pub gcp: GcpSa,
}

impl CloudAnnotations {
    /// The slot of `key`, if it is one of theirs.
    fn slot(&mut self, key: &str) -> Option<&mut Option<Box<str>>> {
        Some(match key {
            azure::CLIENT_ID => &mut self.azure.client_id,
            azure::TENANT_ID => &mut self.azure.tenant_id,
            azure::EXPIRATION => &mut self.azure.expiration,
            gcp::PROVIDER => &mut self.gcp.provider,
            gcp::EMAIL => &mut self.gcp.email,
            gcp::AUDIENCE => &mut self.gcp.audience,
            gcp::EXPIRATION => &mut self.gcp.expiration,
            _ => return None,
        })
    }
}

impl SaAnnotations {
    /// Extracts the annotations; `None` when the ServiceAccount has no role-arn annotation, no
    /// other cloud's annotation and no key under our prefix that we do not know.
    pub fn from_annotations<'a>(
        cfg: &InjectionConfig,
        annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<Self> {
        let keys = &cfg.keys;
        let mut role_arn = None;
        let mut more = SaExtras::default();
        let mut unknown = Vec::new();
        let mut clouds = CloudAnnotations::default();
        let mut any_cloud = false;
        for (key, value) in annotations {
            if let Some(slot) = clouds.slot(key) {
                *slot = Some(value.into());
                any_cloud = true;
                continue;
            }
            let slot = match key {
                k if k == keys.role_arn => &mut role_arn,
                k if k == keys.audience => &mut more.audience,
                k if k == keys.sts_regional_endpoints => &mut more.sts_regional_endpoints,
                k if k == keys.token_expiration => &mut more.token_expiration,
                k if k == keys.region => &mut more.region,
                k if k == keys.sts_endpoint => &mut more.sts_endpoint,
                k => {
                    if unknown.len() < MAX_UNKNOWN_KEYS
                        && let Some(warning) = keys.unknown(k, On::ServiceAccount)
                    {
                        unknown.push(warning.into_boxed_str());
                    }
                    continue;
                }
            };
            *slot = Some(value.into());
        }
        unknown.sort_unstable();
        more.unknown = unknown.into_boxed_slice();
        more.clouds = any_cloud.then_some(clouds);
        let found = Self {
            role_arn,
            more: (more != SaExtras::default()).then(|| Box::new(more)),
        };
        (found.role_arn.is_some() || found.more.is_some()).then_some(found)
    }

    fn more(&self) -> Option<&SaExtras> {
        self.more.as_deref()
    }

    /// The `audience` annotation.
    pub fn audience(&self) -> Option<&str> {
        self.more()?.audience.as_deref()
    }

    /// The `sts-regional-endpoints` annotation.
    pub fn sts_regional_endpoints(&self) -> Option<&str> {
        self.more()?.sts_regional_endpoints.as_deref()
    }

    /// The `token-expiration` annotation.
    pub fn token_expiration(&self) -> Option<&str> {
        self.more()?.token_expiration.as_deref()
    }

    /// The `region` annotation.
    pub fn region(&self) -> Option<&str> {
        self.more()?.region.as_deref()
    }

    /// The `sts-endpoint` annotation.
    pub fn sts_endpoint(&self) -> Option<&str> {
        self.more()?.sts_endpoint.as_deref()
    }

    /// The Azure and Google Cloud annotations, when there are any.
    pub fn clouds(&self) -> Option<&CloudAnnotations> {
        self.more()?.clouds.as_ref()
    }

    /// Warnings about keys under our prefix this webhook does not read on a ServiceAccount.
    pub fn unknown(&self) -> &[Box<str>] {
        self.more().map_or(&[], |more| &more.unknown)
    }
}

#[cfg(test)]
impl SaAnnotations {
    /// The annotations of a ServiceAccount with `pairs`, named without the default prefix.
    pub(crate) fn named(pairs: &[(&str, &str)]) -> Option<Self> {
        let keys: Vec<String> = pairs
            .iter()
            .map(|(name, _)| format!("eks.amazonaws.com/{name}"))
            .collect();
        let annotations = keys.iter().zip(pairs).map(|(k, (_, v))| (k.as_str(), *v));
        Self::from_annotations(&InjectionConfig::default(), annotations)
    }
}

/// Longest role ARN STS takes (`RoleArn` of AssumeRoleWithWebIdentity); a longer annotation is
/// not injected, so one ServiceAccount cannot blow up every container's patch.
pub const MAX_ROLE_ARN_LEN: usize = 2048;

/// The identity injected into a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub role_arn: String,
    pub audience: String,
    pub expiration: i64,
    pub region: Option<String>,
    pub regional_sts: bool,
    /// `AWS_ENDPOINT_URL_STS`.
    pub sts_endpoint: Option<String>,
    /// Whether `AWS_ROLE_SESSION_NAME` comes from the pod's name.
    pub session_name: bool,
}

/// STS's bounds on `RoleSessionName`.
const SESSION_NAME_LEN: std::ops::RangeInclusive<usize> = 2..=64;
/// Characters the API server appends to a pod's `generateName`.
const GENERATED_SUFFIX_LEN: usize = 5;

/// Resolves pod annotation > ServiceAccount annotation > default, pushing a warning for every
/// value that had to be corrected or ignored. `None` when the role ARN is empty.
pub fn resolve(
    sa_name: &str,
    sa: &SaAnnotations,
    pod: &PodView<'_>,
    cfg: &InjectionConfig,
    warnings: &mut Vec<String>,
) -> Option<Identity> {
    let keys = &cfg.keys;
    for unknown in sa.unknown() {
        warnings.push(format!("ServiceAccount {sa_name}: {unknown}"));
    }
    let role_arn = sa.role_arn.as_deref()?.trim();
    if role_arn.is_empty() {
        warnings.push(format!(
            "ServiceAccount {sa_name} has an empty {} annotation: AWS credentials not injected",
            keys.role_arn
        ));
        return None;
    }
    let role_arn = cfg.role_arn(role_arn);
    let role_arn: &str = &role_arn;
    if role_arn.len() > MAX_ROLE_ARN_LEN {
        warnings.push(format!(
            "{} on ServiceAccount {sa_name} is {} characters long, more than an ARN can be ({MAX_ROLE_ARN_LEN}): AWS credentials not injected",
            keys.role_arn,
            role_arn.len()
        ));
        return None;
    }
    if let Err(why) = check_role_arn(role_arn) {
        let names = if role_arn.contains("arn:") {
            ""
        } else {
            "; role names need --compose-role-arn and --aws-account-id"
        };
        warnings.push(format!(
            "{}={role_arn:?} on ServiceAccount {sa_name} is not a valid IAM role ARN ({why}{names}): injected as is, STS will refuse it",
            keys.role_arn
        ));
    }

    let audience = audience(sa.audience(), sa_name, cfg, warnings);

    // Pod, then ServiceAccount, then flag; an invalid value falls back to the next one.
    let from_sa = match sa.token_expiration() {
        Some(v) => parse_expiration(
            &keys.token_expiration,
            v,
            &format!("ServiceAccount {sa_name}"),
            cfg.token_expiration,
            warnings,
        ),
        None => cfg.token_expiration,
    };
    let expiration = match pod.annotation(&keys.token_expiration) {
        Some(v) => parse_expiration(&keys.token_expiration, v, "the pod", from_sa, warnings),
        None => from_sa,
    };

    let regional_sts = match sa.sts_regional_endpoints().map(str::trim) {
        None => cfg.regional_sts,
        Some(v) => parse_go_bool(v).unwrap_or_else(|| {
            warnings.push(format!(
                "{}={v:?} on ServiceAccount {sa_name} is not true or false: using {}",
                keys.sts_regional_endpoints, cfg.regional_sts
            ));
            cfg.regional_sts
        }),
    };

    let region = match sa.region().map(str::trim) {
        None => cfg.region.clone(),
        Some(r) if is_region(r) => Some(r.to_owned()),
        Some(r) => {
            warnings.push(format!(
                "{}={r:?} on ServiceAccount {sa_name} is not a region name: {}",
                keys.region,
                cfg.region
                    .as_deref()
                    .map_or("no region set".to_owned(), |d| format!("using {d}"))
            ));
            cfg.region.clone()
        }
    };

    let sts_endpoint = match sa.sts_endpoint().map(str::trim) {
        None | Some("") => cfg.sts_endpoint.clone(),
        Some(e) => match check_endpoint(e) {
            Ok(()) => Some(e.to_owned()),
            Err(why) => {
                warnings.push(format!(
                    "{}={e:?} on ServiceAccount {sa_name} {why}: {}",
                    keys.sts_endpoint,
                    cfg.sts_endpoint
                        .as_deref()
                        .map_or("AWS_ENDPOINT_URL_STS not set".to_owned(), |d| format!(
                            "using {d}"
                        ))
                ));
                cfg.sts_endpoint.clone()
            }
        },
    };

    Some(Identity {
        role_arn: role_arn.to_owned(),
        audience,
        expiration,
        region,
        regional_sts,
        sts_endpoint,
        session_name: cfg.role_session_name && session_name_fits(pod, warnings),
    })
}

/// Whether the pod's name fits `RoleSessionName` (pod names use only characters STS allows);
/// a warning says why not. A `generateName` pod's name is not known yet: its prefix and the
/// five characters the API server adds are judged.
fn session_name_fits(pod: &PodView<'_>, warnings: &mut Vec<String>) -> bool {
    let length = match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) if !name.is_empty() => name.len(),
        (_, Some(prefix)) => prefix.len() + GENERATED_SUFFIX_LEN,
        _ => 0,
    };
    if SESSION_NAME_LEN.contains(&length) {
        return true;
    }
    warnings.push(format!(
        "the pod's name is {length} characters long, outside the {}-{} STS allows for a role session name: AWS_ROLE_SESSION_NAME not set (the SDK picks one)",
        SESSION_NAME_LEN.start(),
        SESSION_NAME_LEN.end()
    ));
    false
}

/// The token audience of a ServiceAccount's pods: its `audience` annotation (`annotation`), else
/// the default, also when the annotation is blank (with a warning).
pub fn audience(
    annotation: Option<&str>,
    sa_name: &str,
    cfg: &InjectionConfig,
    warnings: &mut Vec<String>,
) -> String {
    match annotation.map(str::trim) {
        None => cfg.audience.clone(),
        Some("") => {
            warnings.push(format!(
                "{} is empty on ServiceAccount {sa_name}: using {}",
                cfg.keys.audience, cfg.audience
            ));
            cfg.audience.clone()
        }
        Some(a) => a.to_owned(),
    }
}

/// `value` as a token lifetime, clamped to the Kubernetes bounds; `fallback` when it is not a
/// number. Every correction is a warning.
fn parse_expiration(
    key: &str,
    value: &str,
    on: &str,
    fallback: i64,
    warnings: &mut Vec<String>,
) -> i64 {
    match value.trim().parse::<i64>() {
        Err(_) => {
            warnings.push(format!(
                "{key}={value:?} on {on} is not a whole number of seconds: using {fallback}"
            ));
            fallback
        }
        Ok(s) if s < MIN_TOKEN_EXPIRATION => {
            warnings.push(format!(
                "{key}={s} on {on} is below the minimum: using {MIN_TOKEN_EXPIRATION}"
            ));
            MIN_TOKEN_EXPIRATION
        }
        Ok(s) if s > MAX_TOKEN_EXPIRATION => {
            warnings.push(format!(
                "{key}={s} on {on} is above the maximum: using {MAX_TOKEN_EXPIRATION}"
            ));
            MAX_TOKEN_EXPIRATION
        }
        Ok(s) => s,
    }
}

/// Checks the shape `arn:<partition>:iam::<12-digit account>:role/<path/>name`.
pub fn check_role_arn(arn: &str) -> Result<(), &'static str> {
    let mut parts = arn.splitn(6, ':');
    let mut next = || parts.next().unwrap_or_default();
    let (scheme, partition, service, region, account, resource) =
        (next(), next(), next(), next(), next(), next());
    if scheme != "arn" {
        return Err("it must start with arn:");
    }
    if !partition.starts_with("aws") {
        return Err("unknown partition");
    }
    if service != "iam" || !region.is_empty() {
        return Err("it must name an IAM resource, arn:<partition>:iam::");
    }
    if !is_account_id(account) {
        return Err("the account ID must be 12 digits");
    }
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return Err("the resource must be role/<name>");
    };
    let name = path_and_name.rsplit('/').next().unwrap_or_default();
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b);
    if name.is_empty() || name.len() > 64 || !name.bytes().all(allowed) {
        return Err("the role name must be 1-64 of A-Z a-z 0-9 +=,.@_-");
    }
    if !path_and_name.bytes().all(|b| allowed(b) || b == b'/') {
        return Err("the role path has characters IAM does not allow");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::injection::config::InjectionSettings;

    const ARN: &str = "arn:aws:iam::111122223333:role/app";

    fn sa(pairs: &[(&str, &str)]) -> SaAnnotations {
        SaAnnotations::named(pairs).expect("role-arn present")
    }

    #[test]
    fn a_service_account_with_only_a_role_is_stored_in_24_bytes_without_a_second_box() {
        // The index holds one per ServiceAccount: with 100 000 of them every byte counts.
        assert_eq!(std::mem::size_of::<SaAnnotations>(), 24);
        assert!(sa(&[("role-arn", ARN)]).more.is_none());
        let more = sa(&[("role-arn", ARN), ("region", "eu-west-1")]);
        assert_eq!(more.region(), Some("eu-west-1"));
        assert_eq!(more.audience(), None);
        assert!(more.clouds().is_none() && more.unknown().is_empty());
        let clouds = SaAnnotations::from_annotations(
            &InjectionConfig::default(),
            [(
                "azure.workload.identity/client-id",
                "00000000-0000-0000-0000-000000000000",
            )],
        )
        .expect("another cloud's annotation is kept");
        assert!(clouds.role_arn.is_none());
        assert!(clouds.clouds().is_some());
        let unknown = sa(&[("role-arn", ARN), ("rolearn", ARN)]);
        assert_eq!(unknown.unknown().len(), 1, "{unknown:?}");
    }

    fn pod(json: &str) -> PodView<'_> {
        PodView::from_slice(json.as_bytes()).unwrap()
    }

    fn run(sa: &SaAnnotations, pod: &PodView<'_>) -> (Option<Identity>, Vec<String>) {
        let mut warnings = vec![];
        let id = resolve(
            "ns/app",
            sa,
            pod,
            &InjectionConfig::default(),
            &mut warnings,
        );
        (id, warnings)
    }

    #[test]
    fn no_role_annotation_means_no_identity() {
        let cfg = InjectionConfig::default();
        assert!(SaAnnotations::from_annotations(&cfg, []).is_none());
    }

    #[test]
    fn defaults_apply_when_only_the_role_is_set() {
        let (id, w) = run(&sa(&[("role-arn", ARN)]), &pod("{}"));
        assert_eq!(
            id.unwrap(),
            Identity {
                role_arn: ARN.into(),
                audience: "sts.amazonaws.com".into(),
                expiration: 86_400,
                region: None,
                regional_sts: false,
                sts_endpoint: None,
                session_name: false,
            }
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn the_sts_endpoint_comes_from_the_service_account_or_the_flag() {
        let cfg = InjectionConfig {
            sts_endpoint: Some("https://sts.internal".into()),
            ..InjectionConfig::default()
        };
        let resolve_with = |annotations: &[(&str, &str)]| {
            let sa = sa(annotations);
            let mut w = Vec::new();
            let view: PodView = serde_json::from_str("{}").unwrap();
            let id = resolve("ns/app", &sa, &view, &cfg, &mut w).unwrap();
            (id.sts_endpoint, w)
        };
        assert_eq!(
            resolve_with(&[("role-arn", ARN)]).0.as_deref(),
            Some("https://sts.internal")
        );
        let own = resolve_with(&[("role-arn", ARN), ("sts-endpoint", "http://127.0.0.1:5000")]);
        assert_eq!(own.0.as_deref(), Some("http://127.0.0.1:5000"));
        let bad = resolve_with(&[("role-arn", ARN), ("sts-endpoint", "sts.internal")]);
        assert_eq!(bad.0.as_deref(), Some("https://sts.internal"));
        assert!(bad.1[0].contains("must start with https://"), "{:?}", bad.1);
    }

    #[test]
    fn the_session_name_is_the_pods_when_it_fits_sts() {
        let cfg = InjectionConfig {
            role_session_name: true,
            ..InjectionConfig::default()
        };
        let session = |metadata: &str| {
            let sa = sa(&[("role-arn", ARN)]);
            let text = format!("{{\"metadata\": {metadata}}}");
            let view: PodView = serde_json::from_str(&text).unwrap();
            let mut w = Vec::new();
            let id = resolve("ns/app", &sa, &view, &cfg, &mut w).unwrap();
            (id.session_name, w)
        };
        assert_eq!(session(r#"{"name": "web-1"}"#), (true, vec![]));
        // 59 + the 5 characters the API server appends: exactly 64.
        let prefix = "p".repeat(59);
        assert!(session(&format!(r#"{{"generateName": "{prefix}"}}"#)).0);
        let long = session(&format!(r#"{{"generateName": "{prefix}x"}}"#));
        assert!(!long.0);
        assert!(long.1[0].contains("65 characters long"), "{:?}", long.1);
        assert!(
            !session(r#"{"name": "a"}"#).0,
            "one character is too short for STS"
        );
        let off = InjectionConfig::default();
        let sa = sa(&[("role-arn", ARN)]);
        let view: PodView = serde_json::from_str(r#"{"metadata": {"name": "web-1"}}"#).unwrap();
        let mut w = Vec::new();
        assert!(
            !resolve("ns/app", &sa, &view, &off, &mut w)
                .unwrap()
                .session_name
        );
    }

    #[test]
    fn service_account_annotations_override_defaults() {
        let sa = sa(&[
            (
                "role-arn",
                " arn:aws-cn:iam::111122223333:role/path/to/app ",
            ),
            ("audience", "custom"),
            ("token-expiration", "3600"),
            ("sts-regional-endpoints", "TRUE"),
            ("region", "cn-north-1"),
        ]);
        let (id, w) = run(&sa, &pod("{}"));
        let id = id.unwrap();
        assert_eq!(id.role_arn, "arn:aws-cn:iam::111122223333:role/path/to/app");
        assert_eq!(id.audience, "custom");
        assert_eq!(id.expiration, 3600);
        assert!(id.regional_sts);
        assert_eq!(id.region.as_deref(), Some("cn-north-1"));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn pod_expiration_beats_service_account() {
        let sa = sa(&[("role-arn", ARN), ("token-expiration", "3600")]);
        let p =
            pod(r#"{"metadata":{"annotations":{"eks.amazonaws.com/token-expiration":"7200"}}}"#);
        assert_eq!(run(&sa, &p).0.unwrap().expiration, 7200);
    }

    #[test]
    fn bad_values_fall_back_with_a_warning_each() {
        let cases = [
            ("token-expiration", "soon", "not a whole number", 86_400),
            ("token-expiration", "60", "below the minimum", 600),
            (
                "token-expiration",
                "99999999999",
                "above the maximum",
                MAX_TOKEN_EXPIRATION,
            ),
        ];
        for (key, value, message, expected) in cases {
            let (id, w) = run(&sa(&[("role-arn", ARN), (key, value)]), &pod("{}"));
            assert_eq!(id.unwrap().expiration, expected);
            assert_eq!(w.len(), 1);
            assert!(
                w[0].contains(message) && w[0].contains("ServiceAccount ns/app"),
                "{w:?}"
            );
        }
        let (id, w) = run(
            &sa(&[("role-arn", ARN), ("sts-regional-endpoints", "yes")]),
            &pod("{}"),
        );
        assert!(!id.unwrap().regional_sts);
        assert!(w[0].contains("not true or false"), "{w:?}");
        let (id, w) = run(
            &sa(&[("role-arn", ARN), ("region", "Frankfurt")]),
            &pod("{}"),
        );
        assert_eq!(id.unwrap().region, None);
        assert!(w[0].contains("not a region name: no region set"), "{w:?}");
        let (id, w) = run(&sa(&[("role-arn", ARN), ("audience", "")]), &pod("{}"));
        assert_eq!(id.unwrap().audience, "sts.amazonaws.com");
        assert!(w[0].contains("is empty"), "{w:?}");
    }

    #[test]
    fn pod_warning_names_the_pod() {
        let p = pod(r#"{"metadata":{"annotations":{"eks.amazonaws.com/token-expiration":"x"}}}"#);
        let (_, w) = run(&sa(&[("role-arn", ARN)]), &p);
        assert!(w[0].contains("on the pod"), "{w:?}");
    }

    #[test]
    fn empty_role_is_not_injected_and_says_so() {
        let (id, w) = run(&sa(&[("role-arn", "  ")]), &pod("{}"));
        assert!(id.is_none());
        assert!(w[0].contains("empty"), "{w:?}");
    }

    #[test]
    fn invalid_arn_is_injected_with_a_warning() {
        let (id, w) = run(&sa(&[("role-arn", "my-role")]), &pod("{}"));
        assert_eq!(id.unwrap().role_arn, "my-role");
        assert!(w[0].contains("not a valid IAM role ARN"), "{w:?}");
        assert!(
            w[0].contains("role names need --compose-role-arn and --aws-account-id"),
            "{w:?}"
        );
        let (_, w) = run(&sa(&[("role-arn", "arn:aws:iam::1:role/a")]), &pod("{}"));
        assert!(!w[0].contains("role names"), "{w:?}");
    }

    #[test]
    fn role_names_become_arns_in_the_configured_account_and_partition() {
        let cfg = InjectionConfig::new(InjectionSettings {
            compose_role_arn: true,
            aws_account_id: Some("111122223333"),
            aws_partition: "aws-us-gov",
            ..InjectionSettings::default()
        })
        .unwrap();
        assert!(cfg.doubts().is_empty(), "{:?}", cfg.doubts());
        for (annotation, expected) in [
            ("app", "arn:aws-us-gov:iam::111122223333:role/app"),
            (
                " team/app ",
                "arn:aws-us-gov:iam::111122223333:role/team/app",
            ),
            (
                "/team/app",
                "arn:aws-us-gov:iam::111122223333:role/team/app",
            ),
            (ARN, ARN),
        ] {
            let mut warnings = vec![];
            let id = resolve(
                "ns/app",
                &sa(&[("role-arn", annotation)]),
                &pod("{}"),
                &cfg,
                &mut warnings,
            );
            assert_eq!(id.unwrap().role_arn, expected);
            assert!(warnings.is_empty(), "{annotation}: {warnings:?}");
        }
        let mut warnings = vec![];
        let empty = resolve(
            "ns/app",
            &sa(&[("role-arn", " ")]),
            &pod("{}"),
            &cfg,
            &mut warnings,
        );
        assert!(empty.is_none(), "an empty annotation is not composed");
    }

    #[test]
    fn arn_shapes() {
        assert!(check_role_arn(ARN).is_ok());
        assert!(check_role_arn("arn:aws-us-gov:iam::111122223333:role/a/b/c_d+=,.@-").is_ok());
        for (bad, why) in [
            ("my-role", "arn:"),
            ("arn:gcp:iam::111122223333:role/a", "partition"),
            ("arn:aws:s3::111122223333:role/a", "IAM"),
            ("arn:aws:iam:eu-west-1:111122223333:role/a", "IAM"),
            ("arn:aws:iam::1111:role/a", "12 digits"),
            ("arn:aws:iam::111122223333:user/a", "role/"),
            ("arn:aws:iam::111122223333:role/", "role name"),
            ("arn:aws:iam::111122223333:role/a b", "role name"),
            ("arn:aws:iam::111122223333:role/p a/b", "path"),
        ] {
            let err = check_role_arn(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
