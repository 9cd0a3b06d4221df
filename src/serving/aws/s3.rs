//! S3 objects over the REST API: read one (`None` when there is none) and write one.

use hyper::Method;
use hyper::body::Bytes;

use super::endpoint::{EndpointError, Endpoints};
use super::{AwsError, Call, Client, Signing};

/// One bucket, addressed virtual-hosted or in the path.
#[derive(Clone)]
pub struct Bucket {
    client: Client,
    endpoints: Endpoints,
    name: String,
    path_style: bool,
}

impl Bucket {
    /// The bucket `name`; fails when the configured S3 endpoint is not a usable URL.
    pub fn new(client: Client, name: &str, path_style: bool) -> Result<Self, EndpointError> {
        let endpoints = client.endpoints();
        endpoints.s3_object(name, "", path_style)?;
        Ok(Self {
            client,
            endpoints,
            name: name.to_owned(),
            path_style,
        })
    }

    /// `s3:GetObject`: the object's bytes, `None` when the key does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, AwsError> {
        match self
            .send("s3:GetObject", Method::GET, key, vec![], Bytes::new())
            .await
        {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.code() == Some("NoSuchKey") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `s3:PutObject` with the given `Content-Type` and `Cache-Control`.
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        cache_control: &str,
    ) -> Result<(), AwsError> {
        let headers = vec![
            ("cache-control", cache_control.to_owned()),
            ("content-type", content_type.to_owned()),
        ];
        self.send("s3:PutObject", Method::PUT, key, headers, body)
            .await
            .map(drop)
    }

    async fn send(
        &self,
        operation: &str,
        method: Method,
        key: &str,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    ) -> Result<Bytes, AwsError> {
        let url = self
            .endpoints
            .s3_object(&self.name, key, self.path_style)
            .expect("the endpoint was checked when the bucket was made");
        let answer = self
            .client
            .send(&Call {
                operation,
                method,
                url,
                headers,
                body,
                signing: Signing {
                    service: "s3",
                    region: self.endpoints.region(),
                    s3: true,
                },
            })
            .await?;
        Ok(answer.body)
    }
}
