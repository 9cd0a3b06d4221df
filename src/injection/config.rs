//! Injection settings, validated once at start-up and shared by `serve` and `inject`.

use std::borrow::Cow;

use crate::error::ConfigError;
use crate::injection::clouds::azure::{AzureSettings, authority_host};
use crate::injection::clouds::gcp::GcpSettings;
use crate::injection::lifetime::{BETWEEN, TOKEN_EXPIRATION};

/// The defaults of the injection flags: the reference webhook's and azure-workload-identity's, so
/// their manifests work unchanged.
pub mod defaults {
    pub const ANNOTATION_PREFIX: &str = "eks.amazonaws.com";
    pub const TOKEN_AUDIENCE: &str = "sts.amazonaws.com";
    pub const TOKEN_EXPIRATION: i64 = 86_400;
    pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
    pub const AWS_PARTITION: &str = "aws";
    pub const AZURE_ENVIRONMENT: &str = "AzurePublicCloud";
    pub const AZURE_TOKEN_AUDIENCE: &str = "api://AzureADTokenExchange";
    /// azure-workload-identity's; the AKS-managed webhook mounts /var/run/secrets/azure/wi/token.
    pub const AZURE_TOKEN_MOUNT_PATH: &str = "/var/run/secrets/azure/tokens";
    pub const GCP_TOKEN_MOUNT_PATH: &str = "/var/run/secrets/gcp/workload-identity";
}
/// Name of the injected projected volume and of its mounts (same as the reference webhook).
pub const VOLUME_NAME: &str = "aws-iam-token";
/// File name of the token inside the mounted volume.
pub const TOKEN_FILE: &str = "token";

/// The annotation (and label) keys under the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationKeys {
    /// ServiceAccount: the IAM role to assume; its presence triggers injection.
    pub role_arn: String,
    /// ServiceAccount: token audience.
    pub audience: String,
    /// ServiceAccount: `true`/`false`, whether to set `AWS_STS_REGIONAL_ENDPOINTS=regional`.
    pub sts_regional_endpoints: String,
    /// ServiceAccount or Pod: token lifetime in seconds (the pod's wins).
    pub token_expiration: String,
    /// ServiceAccount: region for `AWS_REGION`/`AWS_DEFAULT_REGION`.
    pub region: String,
    /// ServiceAccount: `AWS_ENDPOINT_URL_STS` (an on-premises STS).
    pub sts_endpoint: String,
    /// Pod: comma-separated container names that are left alone.
    pub skip_containers: String,
    /// Pod: comma-separated container names that alone are injected.
    pub include_containers: String,
    /// Pod annotation or label: `"true"` opts the whole pod out.
    pub skip_pod: String,
}

impl AnnotationKeys {
    /// Keys under `prefix`, e.g. `eks.amazonaws.com/role-arn`.
    pub fn new(prefix: &str) -> Self {
        let key = |name: &str| format!("{prefix}/{name}");
        Self {
            role_arn: key("role-arn"),
            audience: key("audience"),
            sts_regional_endpoints: key("sts-regional-endpoints"),
            token_expiration: key("token-expiration"),
            region: key("region"),
            sts_endpoint: key("sts-endpoint"),
            skip_containers: key("skip-containers"),
            include_containers: key("include-containers"),
            skip_pod: key("skip-pod-identity-webhook"),
        }
    }
}

/// Where an annotation is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    ServiceAccount,
    Pod,
}

impl AnnotationKeys {
    /// The keys read on `on`.
    fn read_on(&self, on: On) -> Vec<&str> {
        match on {
            On::ServiceAccount => vec![
                &self.role_arn,
                &self.audience,
                &self.sts_regional_endpoints,
                &self.token_expiration,
                &self.region,
                &self.sts_endpoint,
            ],
            On::Pod => vec![
                &self.token_expiration,
                &self.skip_containers,
                &self.include_containers,
                &self.skip_pod,
            ],
        }
    }

    /// Whether `key` is under our prefix.
    pub fn is_ours(&self, key: &str) -> bool {
        self.role_arn
            .strip_suffix("role-arn")
            .is_some_and(|prefix| key.starts_with(prefix))
    }

    /// A warning for `key` when it is under our prefix but not a key read on `on`: a key read
    /// on the other kind of object, or a misspelling (naming the closest key), or unknown.
    pub fn unknown(&self, key: &str, on: On) -> Option<String> {
        if !self.is_ours(key) || self.read_on(on).contains(&key) {
            return None;
        }
        let (here, there) = match on {
            On::ServiceAccount => ("ServiceAccount", "pods"),
            On::Pod => ("pod", "ServiceAccounts"),
        };
        let other = match on {
            On::ServiceAccount => On::Pod,
            On::Pod => On::ServiceAccount,
        };
        if self.read_on(other).contains(&key) {
            return Some(format!(
                "annotation {key} is read on {there}, not on a {here}: it has no effect here"
            ));
        }
        let closest = self
            .read_on(on)
            .into_iter()
            .map(|known| (strsim::levenshtein(key, known), known))
            .min()
            .filter(|(distance, _)| *distance <= 3)
            .map_or(String::new(), |(_, known)| {
                format!("; did you mean {known}?")
            });
        Some(format!(
            "annotation {key} is not one this webhook reads on a {here}{closest}"
        ))
    }
}

/// Everything the pure mutation needs besides the pod and its ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionConfig {
    /// Annotation keys derived from the prefix.
    pub keys: AnnotationKeys,
    /// Default token audience.
    pub audience: String,
    /// Default token lifetime in seconds, within the Kubernetes bounds.
    pub token_expiration: i64,
    /// Where the token volume is mounted in containers (absolute, no trailing slash).
    pub mount_path: String,
    /// Default region, if any.
    pub region: Option<String>,
    /// Default for `AWS_STS_REGIONAL_ENDPOINTS=regional`.
    pub regional_sts: bool,
    /// Default `AWS_ENDPOINT_URL_STS`, if any.
    pub sts_endpoint: Option<String>,
    /// Whether `AWS_ROLE_SESSION_NAME` is set to the pod's name.
    pub role_session_name: bool,
    /// Role names (`app`, `team/app`) become ARNs in this account, as `--compose-role-arn` does in
    /// the reference webhook; `None` unless both that flag and `--aws-account-id` are given.
    pub compose: Option<ComposeRoleArn>,
    /// Why `compose` is `None` although `--compose-role-arn` or `--aws-account-id` was given:
    /// one of [`InjectionConfig::doubts`].
    pub compose_doubt: Option<&'static str>,
    /// Azure Workload Identity.
    pub azure: AzureSettings,
    /// Google Cloud Workload Identity Federation.
    pub gcp: GcpSettings,
}

/// Unvalidated injection settings as given on the command line or in the environment.
#[derive(Debug, Clone)]
pub struct InjectionSettings<'a> {
    pub annotation_prefix: &'a str,
    pub token_audience: &'a str,
    pub token_expiration: i64,
    pub token_mount_path: &'a str,
    pub aws_default_region: Option<&'a str>,
    pub sts_regional_endpoint: bool,
    pub sts_endpoint: Option<&'a str>,
    pub role_session_name: bool,
    pub compose_role_arn: bool,
    pub aws_account_id: Option<&'a str>,
    pub aws_partition: &'a str,
    pub azure_tenant_id: Option<&'a str>,
    pub azure_environment: &'a str,
    pub azure_token_audience: &'a str,
    pub azure_token_mount_path: &'a str,
    pub gcp_token_mount_path: &'a str,
}

impl InjectionConfig {
    /// Validates the settings; every refusal names the flag at fault.
    pub fn new(s: InjectionSettings<'_>) -> Result<Self, ConfigError> {
        let prefix = s.annotation_prefix.trim_end_matches('/');
        if !is_dns_subdomain(prefix) {
            return Err(ConfigError::Invalid {
                flag: "--annotation-prefix",
                value: s.annotation_prefix.to_owned(),
                reason: "must be a DNS subdomain such as eks.amazonaws.com",
            });
        }
        let audience = non_empty(s.token_audience, "--token-audience")?;
        if !TOKEN_EXPIRATION.contains(&s.token_expiration) {
            return Err(ConfigError::Invalid {
                flag: "--token-expiration",
                value: s.token_expiration.to_string(),
                reason: BETWEEN,
            });
        }
        let mount_path = absolute(s.token_mount_path, "--token-mount-path")?;
        // Any region the reference webhook takes is taken (its own fixtures use `seattle`);
        // [`InjectionConfig::doubts`] says when one does not look like a region.
        let region = given(s.aws_default_region).map(str::to_owned);
        let sts_endpoint = given(s.sts_endpoint)
            .map(|e| {
                check_endpoint(e)
                    .map(|()| e.to_owned())
                    .map_err(|reason| ConfigError::Invalid {
                        flag: "--sts-endpoint",
                        value: e.to_owned(),
                        reason,
                    })
            })
            .transpose()?;
        let account = given(s.aws_account_id)
            .map(|a| {
                if is_account_id(a) {
                    Ok(a.to_owned())
                } else {
                    Err(ConfigError::Invalid {
                        flag: "--aws-account-id",
                        value: a.to_owned(),
                        reason: "must be 12 digits",
                    })
                }
            })
            .transpose()?;
        let partition = s.aws_partition.trim();
        if !PARTITIONS.contains(&partition) {
            return Err(ConfigError::Invalid {
                flag: "--aws-partition",
                value: s.aws_partition.to_owned(),
                reason: "must be aws, aws-cn or aws-us-gov",
            });
        }
        let (compose, compose_doubt) = match (s.compose_role_arn, account) {
            (true, Some(account_id)) => (
                Some(ComposeRoleArn {
                    partition: partition.to_owned(),
                    account_id,
                }),
                None,
            ),
            (true, None) => (
                None,
                Some(
                    "--compose-role-arn has no effect without --aws-account-id (the EKS webhook reads the account from EC2 instance metadata): role names are injected as given, and STS refuses them",
                ),
            ),
            (false, Some(_)) => (
                None,
                Some("--aws-account-id has no effect without --compose-role-arn"),
            ),
            (false, None) => (None, None),
        };
        let azure = AzureSettings {
            tenant_id: given(s.azure_tenant_id).map(str::to_owned),
            authority_host: authority_host(s.azure_environment)
                .ok_or_else(|| ConfigError::Invalid {
                    flag: "--azure-environment",
                    value: s.azure_environment.to_owned(),
                    reason: "must be AzurePublicCloud, AzureUSGovernmentCloud or AzureChinaCloud",
                })?
                .to_owned(),
            audience: non_empty(s.azure_token_audience, "--azure-token-audience")?,
            mount_path: absolute(s.azure_token_mount_path, "--azure-token-mount-path")?,
        };
        let gcp = GcpSettings {
            mount_path: absolute(s.gcp_token_mount_path, "--gcp-token-mount-path")?,
        };
        Ok(Self {
            keys: AnnotationKeys::new(prefix),
            audience,
            token_expiration: s.token_expiration,
            mount_path,
            region,
            regional_sts: s.sts_regional_endpoint,
            sts_endpoint,
            role_session_name: s.role_session_name,
            compose,
            compose_doubt,
            azure,
            gcp,
        })
    }

    /// Settings that are accepted, as the reference webhook accepts them, but look wrong: one
    /// message each, for the start-up log.
    pub fn doubts(&self) -> Vec<String> {
        let mut doubts: Vec<String> = self.compose_doubt.iter().map(|d| d.to_string()).collect();
        if let Some(region) = self.region.as_deref().filter(|r| !is_region(r)) {
            doubts.push(format!(
                "--aws-default-region {region:?} does not look like an AWS region name such as eu-west-1; injected as given"
            ));
        }
        doubts
    }

    /// A `role-arn` annotation's value trimmed, as an ARN when it is a role name and
    /// `--compose-role-arn` applies.
    pub fn role_arn<'a>(&self, annotation: &'a str) -> Cow<'a, str> {
        let role = annotation.trim();
        match self.compose.as_ref().and_then(|c| c.arn(role)) {
            Some(arn) => Cow::Owned(arn),
            None => Cow::Borrowed(role),
        }
    }

    /// The token file path inside Linux containers.
    pub fn token_file(&self) -> String {
        format!("{}/{TOKEN_FILE}", self.mount_path)
    }

    /// The token file path inside Windows containers: the mount path on drive `C:`.
    pub fn windows_token_file(&self) -> String {
        format!("C:{}\\{TOKEN_FILE}", self.mount_path.replace('/', "\\"))
    }
}

impl Default for InjectionSettings<'_> {
    /// The reference webhook's defaults, so EKS manifests work unchanged.
    fn default() -> Self {
        Self {
            annotation_prefix: defaults::ANNOTATION_PREFIX,
            token_audience: defaults::TOKEN_AUDIENCE,
            token_expiration: defaults::TOKEN_EXPIRATION,
            token_mount_path: defaults::TOKEN_MOUNT_PATH,
            aws_default_region: None,
            sts_regional_endpoint: false,
            sts_endpoint: None,
            role_session_name: false,
            compose_role_arn: false,
            aws_account_id: None,
            aws_partition: defaults::AWS_PARTITION,
            azure_tenant_id: None,
            azure_environment: defaults::AZURE_ENVIRONMENT,
            azure_token_audience: defaults::AZURE_TOKEN_AUDIENCE,
            azure_token_mount_path: defaults::AZURE_TOKEN_MOUNT_PATH,
            gcp_token_mount_path: defaults::GCP_TOKEN_MOUNT_PATH,
        }
    }
}

impl Default for InjectionConfig {
    /// The reference webhook's defaults.
    fn default() -> Self {
        Self::new(InjectionSettings::default()).expect("defaults are valid")
    }
}

/// Where role names become ARNs (`--compose-role-arn`, `--aws-account-id`, `--aws-partition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeRoleArn {
    pub partition: String,
    pub account_id: String,
}

impl ComposeRoleArn {
    /// The ARN of `role` when it is a role name with an optional path (the reference webhook's
    /// test: no `arn:` in it); `None` when it is already an ARN, or empty.
    fn arn(&self, role: &str) -> Option<String> {
        (!role.is_empty() && !role.contains("arn:")).then(|| {
            format!(
                "arn:{}:iam::{}:role/{}",
                self.partition,
                self.account_id,
                role.trim_start_matches('/')
            )
        })
    }
}

/// The AWS partitions a role ARN, a composed ARN and a trust policy may name.
pub const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// An AWS account ID: 12 digits.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// An optional setting trimmed, `None` when empty.
fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// `value` trimmed, refused when empty.
fn non_empty(value: &str, flag: &'static str) -> Result<String, ConfigError> {
    match value.trim() {
        "" => Err(ConfigError::Invalid {
            flag,
            value: value.to_owned(),
            reason: "must not be empty",
        }),
        v => Ok(v.to_owned()),
    }
}

/// An absolute path without a trailing slash, `:` or empty segments (a mount path).
fn absolute(value: &str, flag: &'static str) -> Result<String, ConfigError> {
    let path = value.trim_end_matches('/');
    if !path.starts_with('/') || path.contains("//") || path.contains(':') {
        return Err(ConfigError::Invalid {
            flag,
            value: value.to_owned(),
            reason: "must be an absolute path without ':' or empty segments",
        });
    }
    Ok(path.to_owned())
}

/// Checks an STS endpoint URL: `http://` or `https://`, a host, no spaces, query or fragment.
pub fn check_endpoint(url: &str) -> Result<(), &'static str> {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err("must start with https:// (or http://)");
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err("must name a host");
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err("must not contain spaces, a query or a fragment");
    }
    Ok(())
}

/// A DNS-1123 subdomain, as Kubernetes requires for an annotation key prefix.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Reads a boolean as Go's `strconv.ParseBool` does, which is how the reference webhook reads
/// its boolean annotations and flags: `1 t T TRUE true True`, `0 f F FALSE false False`.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// [`parse_go_bool`] as a command-line value parser.
pub fn go_bool_flag(value: &str) -> Result<bool, String> {
    parse_go_bool(value)
        .ok_or_else(|| "expected 1, t, T, TRUE, true, True, 0, f, F, FALSE, false or False".into())
}

/// A plausible AWS region name: lowercase letters, digits and dashes, e.g. `us-gov-west-1`.
pub fn is_region(s: &str) -> bool {
    (3..=32).contains(&s.len())
        && s.contains('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::injection::lifetime::MAX_TOKEN_EXPIRATION;

    fn settings() -> InjectionSettings<'static> {
        InjectionSettings::default()
    }

    #[test]
    fn sts_endpoints_are_checked() {
        assert_eq!(check_endpoint("https://sts.example.internal:9000"), Ok(()));
        assert_eq!(check_endpoint("http://127.0.0.1:5000/"), Ok(()));
        assert!(check_endpoint("sts.example").is_err());
        assert!(check_endpoint("https://").is_err());
        assert!(check_endpoint("https://a b").is_err());
        let err = InjectionConfig::new(InjectionSettings {
            sts_endpoint: Some("ftp://x"),
            ..settings()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("--sts-endpoint"), "{err}");
        let blank = InjectionConfig::new(InjectionSettings {
            sts_endpoint: Some(" "),
            ..settings()
        })
        .unwrap();
        assert_eq!(blank.sts_endpoint, None);
    }

    #[test]
    fn defaults_match_the_reference_webhook() {
        let c = InjectionConfig::default();
        assert_eq!(c.keys.role_arn, "eks.amazonaws.com/role-arn");
        assert_eq!(
            c.token_file(),
            "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
        );
        assert_eq!(
            c.windows_token_file(),
            r"C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token"
        );
    }

    #[test]
    fn custom_prefix_and_trailing_slashes_are_normalised() {
        let c = InjectionConfig::new(InjectionSettings {
            annotation_prefix: "irsa.example.com/",
            token_mount_path: "/run/aws/",
            ..settings()
        })
        .unwrap();
        assert_eq!(
            c.keys.skip_pod,
            "irsa.example.com/skip-pod-identity-webhook"
        );
        assert_eq!(c.token_file(), "/run/aws/token");
    }

    #[test]
    fn every_bad_setting_names_its_flag() {
        let cases: [(InjectionSettings<'static>, &str); 5] = [
            (
                InjectionSettings {
                    annotation_prefix: "Not A Prefix",
                    ..settings()
                },
                "--annotation-prefix",
            ),
            (
                InjectionSettings {
                    token_audience: " ",
                    ..settings()
                },
                "--token-audience",
            ),
            (
                InjectionSettings {
                    token_expiration: 599,
                    ..settings()
                },
                "--token-expiration",
            ),
            (
                InjectionSettings {
                    token_expiration: MAX_TOKEN_EXPIRATION + 1,
                    ..settings()
                },
                "--token-expiration",
            ),
            (
                InjectionSettings {
                    token_mount_path: "relative/path",
                    ..settings()
                },
                "--token-mount-path",
            ),
        ];
        for (s, flag) in cases {
            let err = InjectionConfig::new(s).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn a_region_the_reference_takes_is_taken_with_a_doubt() {
        for (region, doubt) in [("seattle", true), ("EU West", true), ("eu-west-1", false)] {
            let c = InjectionConfig::new(InjectionSettings {
                aws_default_region: Some(region),
                ..settings()
            })
            .unwrap();
            assert_eq!(c.region.as_deref(), Some(region));
            assert_eq!(c.doubts().len(), usize::from(doubt), "{region}");
        }
        assert_eq!(
            InjectionConfig::new(InjectionSettings {
                aws_default_region: Some("seattle"),
                ..settings()
            })
            .unwrap()
            .doubts(),
            [
                "--aws-default-region \"seattle\" does not look like an AWS region name such as eu-west-1; injected as given"
            ]
        );
    }

    #[test]
    fn unknown_keys_under_the_prefix_are_named_with_the_closest_known_one() {
        let keys = AnnotationKeys::new("eks.amazonaws.com");
        let sa = |k: &str| keys.unknown(k, On::ServiceAccount);
        let pod = |k: &str| keys.unknown(k, On::Pod);
        assert_eq!(
            sa("eks.amazonaws.com/rolearn").unwrap(),
            "annotation eks.amazonaws.com/rolearn is not one this webhook reads on a ServiceAccount; did you mean eks.amazonaws.com/role-arn?"
        );
        assert_eq!(
            pod("eks.amazonaws.com/skip-container").unwrap(),
            "annotation eks.amazonaws.com/skip-container is not one this webhook reads on a pod; did you mean eks.amazonaws.com/skip-containers?"
        );
        assert_eq!(
            pod("eks.amazonaws.com/role-arn").unwrap(),
            "annotation eks.amazonaws.com/role-arn is read on ServiceAccounts, not on a pod: it has no effect here"
        );
        assert_eq!(
            sa("eks.amazonaws.com/compute-type").unwrap(),
            "annotation eks.amazonaws.com/compute-type is not one this webhook reads on a ServiceAccount"
        );
        assert_eq!(sa("eks.amazonaws.com/role-arn"), None);
        assert_eq!(pod("eks.amazonaws.com/token-expiration"), None);
        assert_eq!(
            sa("example.com/rolearn"),
            None,
            "other prefixes are not ours"
        );
        assert_eq!(sa("eks.amazonaws.comrolearn"), None);
    }

    #[test]
    fn booleans_read_like_go() {
        for v in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(v), Some(true), "{v}");
        }
        for v in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(v), Some(false), "{v}");
        }
        for v in ["", "yes", "tRUE", " true", "2"] {
            assert_eq!(parse_go_bool(v), None, "{v:?}");
        }
    }

    #[test]
    fn region_shapes() {
        assert!(is_region("eu-west-1"));
        assert!(is_region("us-gov-west-1"));
        assert!(!is_region("euwest1"));
        assert!(!is_region("eu_west_1"));
        assert!(!is_region("-eu-west-1"));
    }
}
