//! `--export-s3 s3://bucket[/prefix]`: the two documents as S3 objects at their public paths
//! under the prefix, for an issuer `https://<bucket>.s3.<region>.amazonaws.com[/prefix]`.

use std::time::Duration;

use hyper::body::Bytes;

use super::document::{DISCOVERY_PATH, Documents, JWKS_PATH};
use crate::error::ConfigError;
use crate::serving::aws::endpoint::EndpointError;
use crate::serving::aws::s3::Bucket;
use crate::serving::aws::{AwsError, Client};

/// A bucket and a key prefix (no leading or trailing slash; empty for the bucket's root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// Reads `s3://bucket[/prefix]`.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::Invalid {
            flag: "--export-s3",
            value: value.to_owned(),
            reason,
        };
        let rest = value
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it must be s3://BUCKET or s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(invalid(
                "the bucket name must be 3 to 63 lowercase letters, digits, '-' and '.'",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.contains("//")
            || prefix
                .chars()
                .any(|c| c.is_control() || c == '?' || c == '#')
        {
            return Err(invalid(
                "the prefix must be a path without empty segments, '?' or '#'",
            ));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The object key of a document at `path` (`/openid/v1/jwks`).
    pub fn key(&self, path: &str) -> String {
        let path = path.trim_start_matches('/');
        if self.prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.as_str() {
            "" => write!(f, "s3://{}", self.bucket),
            prefix => write!(f, "s3://{}/{prefix}", self.bucket),
        }
    }
}

/// Why an upload failed; the objects already there stay.
#[derive(Debug, thiserror::Error)]
#[error("s3://{bucket}/{key}: {cause}")]
pub struct S3Error {
    bucket: String,
    key: String,
    cause: AwsError,
}

/// Writes to one [`S3Location`].
#[derive(Clone)]
pub struct S3Exporter {
    bucket: Bucket,
    location: S3Location,
    cache_control: String,
}

impl S3Exporter {
    /// Writes with `client` (`AWS_ENDPOINT_URL_S3` for S3-compatible stores, `path_style` for
    /// those that want the bucket in the path); objects say
    /// `Cache-Control: public, max-age=<refresh interval>`.
    pub fn new(
        client: Client,
        location: S3Location,
        path_style: bool,
        refresh_interval: Duration,
    ) -> Result<Self, EndpointError> {
        Ok(Self {
            bucket: Bucket::new(client, &location.bucket, path_style)?,
            location,
            cache_control: format!("public, max-age={}", refresh_interval.as_secs().max(1)),
        })
    }

    /// Where it writes.
    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// Uploads both documents, the JWKS first, each only when the object differs; returns how
    /// many were written.
    pub async fn write(&self, docs: &Documents) -> Result<usize, S3Error> {
        let mut written = 0;
        for (path, body) in [
            (JWKS_PATH, &docs.jwks.body),
            (DISCOVERY_PATH, &docs.discovery.body),
        ] {
            let key = self.location.key(path);
            let current = self
                .bucket
                .get(&key)
                .await
                .map_err(|e| self.error(&key, e))?;
            if current.as_deref() == Some(body.as_slice()) {
                continue;
            }
            self.bucket
                .put(
                    &key,
                    Bytes::from(body.clone()),
                    "application/json",
                    &self.cache_control,
                )
                .await
                .map_err(|e| self.error(&key, e))?;
            written += 1;
        }
        Ok(written)
    }

    fn error(&self, key: &str, cause: AwsError) -> S3Error {
        S3Error {
            bucket: self.location.bucket.clone(),
            key: key.to_owned(),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_keys() {
        let root = S3Location::parse("s3://issuer-bucket").unwrap();
        assert_eq!(root.key(JWKS_PATH), "openid/v1/jwks");
        assert_eq!(root.to_string(), "s3://issuer-bucket");
        let nested = S3Location::parse("s3://issuer-bucket/clusters/a/").unwrap();
        assert_eq!(
            nested.key(DISCOVERY_PATH),
            "clusters/a/.well-known/openid-configuration"
        );
        assert_eq!(nested.to_string(), "s3://issuer-bucket/clusters/a");
        for bad in [
            "issuer-bucket",
            "s3://",
            "s3://Upper",
            "s3://ab",
            "s3://b-/x",
            "s3://bucket/a//b",
        ] {
            let err = S3Location::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("--export-s3"), "{bad}: {err}");
        }
    }
}
