//! IAM and STS over the Query protocol: a signed form POST naming the action, an XML answer.

use hyper::Method;
use hyper::body::Bytes;

use super::{AwsError, Call, Client, Signing};

/// A provider's client IDs (audiences) and certificate thumbprints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
}

/// `sts:GetCallerIdentity`: the ARN the calls are made as.
pub async fn caller_arn(client: &Client) -> Result<String, AwsError> {
    let operation = "sts:GetCallerIdentity";
    let endpoints = client.endpoints();
    let url = endpoints.sts()?;
    let params = [("Action", "GetCallerIdentity")];
    let signing = ("sts", endpoints.region());
    let body = call(client, operation, &url, signing, "2011-06-15", &params).await?;
    read(operation, &body, |doc| first_text(doc, "Arn"))
}

/// `iam:ListOpenIDConnectProviders`: every provider's ARN.
pub async fn oidc_provider_arns(client: &Client) -> Result<Vec<String>, AwsError> {
    let body = iam(client, "ListOpenIDConnectProviders", &[]).await?;
    read("iam:ListOpenIDConnectProviders", &body, |doc| {
        Some(texts(doc, "Arn"))
    })
}

/// `iam:GetOpenIDConnectProvider`.
pub async fn oidc_provider(client: &Client, arn: &str) -> Result<OidcProvider, AwsError> {
    let body = iam(
        client,
        "GetOpenIDConnectProvider",
        &[("OpenIDConnectProviderArn", arn)],
    )
    .await?;
    read("iam:GetOpenIDConnectProvider", &body, |doc| {
        Some(OidcProvider {
            client_ids: members(doc, "ClientIDList"),
            thumbprints: members(doc, "ThumbprintList"),
        })
    })
}

/// `iam:GetRole`: the role's trust policy as IAM returns it (URL-encoded JSON).
pub async fn role_trust_policy(client: &Client, name: &str) -> Result<String, AwsError> {
    let body = iam(client, "GetRole", &[("RoleName", name)]).await?;
    read("iam:GetRole", &body, |doc| {
        first_text(doc, "AssumeRolePolicyDocument")
    })
}

async fn iam(client: &Client, action: &str, params: &[(&str, &str)]) -> Result<Bytes, AwsError> {
    let operation = format!("iam:{action}");
    let (url, region) = client.endpoints().iam()?;
    let mut all = vec![("Action", action)];
    all.extend_from_slice(params);
    call(
        client,
        &operation,
        &url,
        ("iam", region),
        "2010-05-08",
        &all,
    )
    .await
}

async fn call(
    client: &Client,
    operation: &str,
    url: &str,
    (service, region): (&'static str, &str),
    version: &str,
    params: &[(&str, &str)],
) -> Result<Bytes, AwsError> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(params);
    form.append_pair("Version", version);
    let answer = client
        .send(&Call {
            operation,
            method: Method::POST,
            url: url.to_owned(),
            headers: vec![(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            )],
            body: Bytes::from(form.finish()),
            signing: Signing {
                service,
                region,
                s3: false,
            },
        })
        .await?;
    Ok(answer.body)
}

/// Applies `pick` to the parsed answer; an answer without what `pick` wants is an error.
fn read<T>(
    operation: &str,
    body: &[u8],
    pick: impl FnOnce(&roxmltree::Document) -> Option<T>,
) -> Result<T, AwsError> {
    let failed = |cause: String| AwsError::Answer {
        operation: operation.to_owned(),
        cause,
    };
    let text = std::str::from_utf8(body).map_err(|e| failed(e.to_string()))?;
    let document = roxmltree::Document::parse(text).map_err(|e| failed(e.to_string()))?;
    pick(&document).ok_or_else(|| failed(format!("no expected element in {text:.200}")))
}

/// The text of the first element named `tag` (any namespace).
pub(super) fn first_text(doc: &roxmltree::Document, tag: &str) -> Option<String> {
    doc.descendants()
        .find(|n| n.has_tag_name(tag))
        .map(|n| n.text().unwrap_or_default().trim().to_owned())
}

/// The texts of every element named `tag`.
fn texts(doc: &roxmltree::Document, tag: &str) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name(tag))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .collect()
}

/// The `member` texts of the list element named `list`.
fn members(doc: &roxmltree::Document, list: &str) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name(list))
        .flat_map(|l| l.children().filter(|m| m.has_tag_name("member")))
        .filter_map(|m| m.text().map(|t| t.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVIDER: &str = r#"<GetOpenIDConnectProviderResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
      <GetOpenIDConnectProviderResult>
        <ThumbprintList><member>c3768084dfb3d2b68b7897bf5f565da8eEXAMPLE</member></ThumbprintList>
        <CreateDate>2014-10-09T03:32:51.398Z</CreateDate>
        <ClientIDList><member>sts.amazonaws.com</member><member>other</member></ClientIDList>
        <Url>server.example.com</Url>
      </GetOpenIDConnectProviderResult>
      <ResponseMetadata><RequestId>2c91531b</RequestId></ResponseMetadata>
    </GetOpenIDConnectProviderResponse>"#;

    #[test]
    fn answers_are_read_by_element() {
        let provider = read("iam:GetOpenIDConnectProvider", PROVIDER.as_bytes(), |d| {
            Some(OidcProvider {
                client_ids: members(d, "ClientIDList"),
                thumbprints: members(d, "ThumbprintList"),
            })
        })
        .unwrap();
        assert_eq!(provider.client_ids, ["sts.amazonaws.com", "other"]);
        assert_eq!(
            provider.thumbprints,
            ["c3768084dfb3d2b68b7897bf5f565da8eEXAMPLE"]
        );
        let list = r#"<ListOpenIDConnectProvidersResponse><ListOpenIDConnectProvidersResult>
          <OpenIDConnectProviderList>
            <member><Arn>arn:aws:iam::123456789012:oidc-provider/a.example</Arn></member>
            <member><Arn>arn:aws:iam::123456789012:oidc-provider/b.example/x</Arn></member>
          </OpenIDConnectProviderList></ListOpenIDConnectProvidersResult>
          </ListOpenIDConnectProvidersResponse>"#;
        let arns = read("l", list.as_bytes(), |d| Some(texts(d, "Arn"))).unwrap();
        assert_eq!(arns.len(), 2);
        assert!(arns[1].ends_with("b.example/x"));
        let empty = "<R><OpenIDConnectProviderList/></R>";
        assert!(
            read("l", empty.as_bytes(), |d| Some(texts(d, "Arn")))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn unreadable_or_incomplete_answers_are_errors() {
        let missing = read("iam:GetRole", b"<GetRoleResponse/>", |d| {
            first_text(d, "AssumeRolePolicyDocument")
        })
        .unwrap_err()
        .to_string();
        assert!(
            missing.starts_with("iam:GetRole: the answer cannot be read"),
            "{missing}"
        );
        assert!(read("x", b"not xml", |d| first_text(d, "Arn")).is_err());
    }
}
