//! Where each service answers: the standard endpoint in the region's partition (with the FIPS
//! and dual-stack variants the configuration asks for), or the configured override.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Bytes of an S3 key segment that stay as they are (RFC 3986 unreserved).
const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An endpoint override that is not a URL a client can call.
#[derive(Debug, thiserror::Error)]
#[error(
    "the {service} endpoint {url:?} (AWS_ENDPOINT_URL_{service} or AWS_ENDPOINT_URL) is not an http:// or https:// URL with a host"
)]
pub struct EndpointError {
    service: &'static str,
    url: String,
}

/// An AWS partition: its DNS suffix and where its global IAM lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Partition {
    dns_suffix: &'static str,
    iam_host: &'static str,
    iam_fips_host: &'static str,
    iam_region: &'static str,
}

/// The partition a region belongs to: China (`cn-`), GovCloud (`us-gov-`), else the commercial one.
fn partition(region: &str) -> Partition {
    if region.starts_with("cn-") {
        Partition {
            dns_suffix: "amazonaws.com.cn",
            iam_host: "iam.cn-north-1.amazonaws.com.cn",
            iam_fips_host: "iam.cn-north-1.amazonaws.com.cn",
            iam_region: "cn-north-1",
        }
    } else if region.starts_with("us-gov-") {
        Partition {
            dns_suffix: "amazonaws.com",
            iam_host: "iam.us-gov.amazonaws.com",
            iam_fips_host: "iam.us-gov.amazonaws.com",
            iam_region: "us-gov-west-1",
        }
    } else {
        Partition {
            dns_suffix: "amazonaws.com",
            iam_host: "iam.amazonaws.com",
            iam_fips_host: "iam-fips.amazonaws.com",
            iam_region: "us-east-1",
        }
    }
}

/// The endpoints of one region.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    region: String,
    fips: bool,
    dual_stack: bool,
    iam: Option<String>,
    sts: Option<String>,
    s3: Option<String>,
}

impl Endpoints {
    /// The standard endpoints of `region`, FIPS ones if `fips`.
    pub fn new(region: &str, fips: bool) -> Self {
        Self {
            region: region.to_owned(),
            fips,
            ..Self::default()
        }
    }

    /// Dual-stack (IPv4 and IPv6) S3 endpoints.
    pub fn dual_stack(mut self, on: bool) -> Self {
        self.dual_stack = on;
        self
    }

    /// Overrides by service ID (`IAM`, `STS`, `S3`).
    pub fn overrides(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        self.iam = lookup("IAM");
        self.sts = lookup("STS");
        self.s3 = lookup("S3");
        self
    }

    /// The region requests are signed for (IAM's is its partition's, [`Self::iam`]).
    pub fn region(&self) -> &str {
        &self.region
    }

    /// IAM's URL and the region its requests are signed for.
    pub fn iam(&self) -> Result<(String, &'static str), EndpointError> {
        let partition = partition(&self.region);
        let host = if self.fips {
            partition.iam_fips_host
        } else {
            partition.iam_host
        };
        let url = base("IAM", self.iam.as_deref(), host)?;
        Ok((format!("{url}/"), partition.iam_region))
    }

    /// STS's regional URL.
    pub fn sts(&self) -> Result<String, EndpointError> {
        let name = if self.fips { "sts-fips" } else { "sts" };
        let host = format!(
            "{name}.{}.{}",
            self.region,
            partition(&self.region).dns_suffix
        );
        Ok(format!("{}/", base("STS", self.sts.as_deref(), &host)?))
    }

    /// The URL of `key` in `bucket`: virtual-hosted (`bucket.host/key`) unless `path_style` or
    /// the bucket name has a dot (a wildcard certificate covers one label), then `host/bucket/key`.
    pub fn s3_object(
        &self,
        bucket: &str,
        key: &str,
        path_style: bool,
    ) -> Result<String, EndpointError> {
        let name = match (self.fips, self.dual_stack) {
            (false, false) => "s3",
            (true, false) => "s3-fips",
            (false, true) => "s3.dualstack",
            (true, true) => "s3-fips.dualstack",
        };
        let host = format!(
            "{name}.{}.{}",
            self.region,
            partition(&self.region).dns_suffix
        );
        let base = base("S3", self.s3.as_deref(), &host)?;
        let key: Vec<String> = key
            .split('/')
            .map(|segment| utf8_percent_encode(segment, KEY_SEGMENT).to_string())
            .collect();
        let key = key.join("/");
        if path_style || bucket.contains('.') {
            return Ok(format!("{base}/{bucket}/{key}"));
        }
        let (scheme, rest) = base.split_once("://").expect("base checked the scheme");
        Ok(format!("{scheme}://{bucket}.{rest}/{key}"))
    }
}

/// `https://<host>`, or the override without a trailing slash once it is checked.
fn base(
    service: &'static str,
    configured: Option<&str>,
    host: &str,
) -> Result<String, EndpointError> {
    let Some(url) = configured else {
        return Ok(format!("https://{host}"));
    };
    let invalid = || EndpointError {
        service,
        url: url.to_owned(),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| invalid())?;
    let usable = matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.host().is_some_and(|h| !h.is_empty())
        && uri.query().is_none();
    if !usable {
        return Err(invalid());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_endpoints_follow_the_partition() {
        let us = Endpoints::new("eu-west-1", false);
        assert_eq!(
            us.iam().unwrap(),
            ("https://iam.amazonaws.com/".into(), "us-east-1")
        );
        assert_eq!(us.sts().unwrap(), "https://sts.eu-west-1.amazonaws.com/");
        let cn = Endpoints::new("cn-northwest-1", false);
        assert_eq!(
            cn.iam().unwrap(),
            (
                "https://iam.cn-north-1.amazonaws.com.cn/".into(),
                "cn-north-1"
            )
        );
        assert_eq!(
            cn.s3_object("b", "k", false).unwrap(),
            "https://b.s3.cn-northwest-1.amazonaws.com.cn/k"
        );
        let gov = Endpoints::new("us-gov-east-1", true);
        assert_eq!(gov.iam().unwrap().1, "us-gov-west-1");
        assert_eq!(
            gov.sts().unwrap(),
            "https://sts-fips.us-gov-east-1.amazonaws.com/"
        );
        let fips = Endpoints::new("us-east-2", true).dual_stack(true);
        assert_eq!(fips.iam().unwrap().0, "https://iam-fips.amazonaws.com/");
        assert_eq!(
            fips.s3_object("b", "k", false).unwrap(),
            "https://b.s3-fips.dualstack.us-east-2.amazonaws.com/k"
        );
    }

    #[test]
    fn s3_urls_encode_each_key_segment_and_choose_the_style() {
        let e = Endpoints::new("us-east-1", false);
        assert_eq!(
            e.s3_object(
                "issuer",
                "clusters/a b/.well-known/openid-configuration",
                false
            )
            .unwrap(),
            "https://issuer.s3.us-east-1.amazonaws.com/clusters/a%20b/.well-known/openid-configuration"
        );
        assert_eq!(
            e.s3_object("issuer", "openid/v1/jwks", true).unwrap(),
            "https://s3.us-east-1.amazonaws.com/issuer/openid/v1/jwks"
        );
        assert_eq!(
            e.s3_object("issuer.example.com", "k", false).unwrap(),
            "https://s3.us-east-1.amazonaws.com/issuer.example.com/k",
            "a dotted bucket is addressed in the path"
        );
    }

    #[test]
    fn overrides_are_used_as_given_and_checked() {
        let lookup = |service: &str| match service {
            "S3" => Some("http://127.0.0.1:9000/".to_owned()),
            "IAM" => Some("http://localhost:5000".to_owned()),
            _ => None,
        };
        let e = Endpoints::new("us-east-1", false).overrides(lookup);
        assert_eq!(
            e.s3_object("b", "k", true).unwrap(),
            "http://127.0.0.1:9000/b/k"
        );
        assert_eq!(
            e.s3_object("b", "k", false).unwrap(),
            "http://b.127.0.0.1:9000/k"
        );
        assert_eq!(
            e.iam().unwrap(),
            ("http://localhost:5000/".into(), "us-east-1")
        );
        assert_eq!(e.sts().unwrap(), "https://sts.us-east-1.amazonaws.com/");
        for bad in ["localhost:9000", "ftp://x", "http://", "http://h/?a=b"] {
            let e = Endpoints::new("us-east-1", false).overrides(|_| Some(bad.to_owned()));
            let error = e.s3_object("b", "k", true).unwrap_err().to_string();
            assert!(error.contains("AWS_ENDPOINT_URL_S3"), "{bad}: {error}");
        }
    }
}
