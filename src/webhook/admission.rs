//! AdmissionReview in, AdmissionReview out.
//!
//! The request is parsed leanly (only the fields we use; the pod stays borrowed from the body).
//! The response is written here rather than with kube-core's `AdmissionResponse`, whose `patch`
//! serialises as an array of numbers where the API server requires base64 (kube-rs #1781).

use std::borrow::Cow;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::injection::mutation::Outcome;
use crate::injection::pod::PodView;

/// A body that is not an AdmissionReview we can answer; becomes HTTP 400 with this message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadReview {
    #[error("body is not a JSON AdmissionReview: {0}")]
    Json(String),
    #[error("kind must be AdmissionReview, got {0:?}")]
    Kind(String),
    #[error("apiVersion must be admission.k8s.io/v1 or v1beta1, got {0:?}")]
    ApiVersion(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("request.uid is missing")]
    NoUid,
    #[error("request.object is missing for a Pod CREATE")]
    NoObject,
    #[error("request.namespace is missing for a Pod CREATE")]
    NoNamespace,
    #[error("request.object is not a Pod: {0}")]
    NotAPod(String),
}

/// The review with `request.object` read as `O`: the pod view on the fast path (one pass over
/// the body), or raw JSON on the careful path that tells what is wrong.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "O: Deserialize<'de>, 'de: 'a"))]
struct ReviewIn<'a, O> {
    #[serde(borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default = "none")]
    request: Option<RequestIn<'a, O>>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "O: Deserialize<'de>, 'de: 'a"))]
struct RequestIn<'a, O> {
    #[serde(borrow, default)]
    uid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<GroupKind<'a>>,
    #[serde(borrow, default)]
    resource: Option<GroupResource<'a>>,
    #[serde(borrow, default)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    operation: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(default = "none")]
    object: Option<O>,
}

#[derive(Deserialize)]
struct GroupKind<'a> {
    #[serde(borrow, default)]
    group: Cow<'a, str>,
    #[serde(borrow, default)]
    version: Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct GroupResource<'a> {
    #[serde(borrow, default)]
    group: Cow<'a, str>,
    #[serde(borrow, default)]
    resource: Cow<'a, str>,
}

/// A parsed review, borrowing from the request body.
#[derive(Debug)]
pub struct Review<'a> {
    pub api_version: Cow<'a, str>,
    pub uid: Cow<'a, str>,
    pub target: Target<'a>,
}

/// What the review asks about.
#[derive(Debug)]
pub enum Target<'a> {
    /// Anything but a Pod CREATE: allowed untouched.
    Other,
    /// A Pod CREATE in `namespace`.
    PodCreate {
        namespace: Cow<'a, str>,
        pod: Box<PodView<'a>>,
    },
}

/// Parses and checks an AdmissionReview body.
pub fn parse(body: &[u8]) -> Result<Review<'_>, BadReview> {
    // Pods are the common case: read the object as a pod while reading the review. Anything
    // that does not parse that way is read again, carefully, to say exactly what is wrong.
    match serde_json::from_slice::<ReviewIn<'_, PodView<'_>>>(body) {
        Ok(review) => check(review, Ok),
        Err(_) => {
            let review: ReviewIn<'_, &RawValue> =
                serde_json::from_slice(body).map_err(|e| BadReview::Json(e.to_string()))?;
            check(review, |raw| {
                serde_json::from_str(raw.get()).map_err(|e| BadReview::NotAPod(e.to_string()))
            })
        }
    }
}

fn check<'a, O>(
    review: ReviewIn<'a, O>,
    into_pod: impl FnOnce(O) -> Result<PodView<'a>, BadReview>,
) -> Result<Review<'a>, BadReview> {
    let kind = review.kind.unwrap_or_default();
    if kind != "AdmissionReview" {
        return Err(BadReview::Kind(kind.into_owned()));
    }
    let api_version = review.api_version.unwrap_or_default();
    if !matches!(
        api_version.as_ref(),
        "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
    ) {
        return Err(BadReview::ApiVersion(api_version.into_owned()));
    }
    let request = review.request.ok_or(BadReview::NoRequest)?;
    let uid = request
        .uid
        .filter(|u| !u.is_empty())
        .ok_or(BadReview::NoUid)?;
    // Both must say Pod: a pods-resource review of another kind (a Binding, an Eviction) or
    // a Pod kind under another resource is not a pod we may patch.
    let is_pod = request
        .resource
        .as_ref()
        .is_some_and(|r| r.group.is_empty() && r.resource == "pods")
        && request
            .kind
            .as_ref()
            .is_some_and(|k| k.group.is_empty() && k.version == "v1" && k.kind == "Pod");
    let is_create = request.operation.as_deref() == Some("CREATE");
    let subresource = request
        .sub_resource
        .as_deref()
        .is_some_and(|s| !s.is_empty());
    if !is_pod || !is_create || subresource {
        return Ok(Review {
            api_version,
            uid,
            target: Target::Other,
        });
    }
    let pod = into_pod(request.object.ok_or(BadReview::NoObject)?)?;
    let namespace = request
        .namespace
        .filter(|n| !n.is_empty())
        .or_else(|| pod.metadata.namespace.clone().filter(|n| !n.is_empty()))
        .ok_or(BadReview::NoNamespace)?;
    Ok(Review {
        api_version,
        uid,
        target: Target::PodCreate {
            namespace,
            pod: Box::new(pod),
        },
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// An answer is at most this many times the request's size, plus [`ANSWER_SLACK`].
pub const ANSWER_FACTOR: usize = 4;
/// Room for the patch of a small pod, whose answer may outgrow its request.
pub const ANSWER_SLACK: usize = 64 * 1024;

/// The answer to `review`, never larger than [`ANSWER_FACTOR`] × `request_len` +
/// [`ANSWER_SLACK`]: an outcome whose answer would be is withdrawn (no patch, decision
/// `TooLarge`, one warning that says why). Returns the answer and the outcome it carries.
pub fn answer(
    review: &Review<'_>,
    outcome: Option<Outcome>,
    request_len: usize,
) -> (Vec<u8>, Option<Outcome>) {
    let bytes = respond(review, outcome.as_ref());
    let limit = ANSWER_FACTOR * request_len + ANSWER_SLACK;
    match outcome {
        Some(outcome) if bytes.len() > limit => {
            let withdrawn = outcome.withdrawn(format!(
                "the patch would make the answer {} bytes, more than the webhook sends for a {request_len}-byte request ({limit}): AWS credentials not injected",
                bytes.len()
            ));
            (respond(review, Some(&withdrawn)), Some(withdrawn))
        }
        outcome => (bytes, outcome),
    }
}

/// The AdmissionReview answer: always allowed, with the patch (base64 JSONPatch) when there is
/// one and the outcome's warnings.
pub fn respond(review: &Review<'_>, outcome: Option<&Outcome>) -> Vec<u8> {
    let patch = outcome.filter(|o| !o.patch.0.is_empty()).map(|o| {
        let json = serde_json::to_vec(&o.patch).expect("a patch always serialises");
        base64::engine::general_purpose::STANDARD.encode(json)
    });
    let out = ReviewOut {
        api_version: &review.api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid: &review.uid,
            allowed: true,
            patch_type: patch.is_some().then_some("JSONPatch"),
            patch,
            warnings: outcome.map_or(&[], |o| &o.warnings),
        },
    };
    serde_json::to_vec(&out).expect("a response always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::injection::config::InjectionConfig;
    use crate::injection::identity::SaAnnotations;
    use crate::injection::mutation::{Decision, ServiceAccount, mutate};
    use serde_json::{Value, json};

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request
        }))
        .unwrap()
    }

    fn pod_create() -> Value {
        json!({
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "namespace": "team",
            "object": {"metadata": {"generateName": "web-"}, "spec": {"serviceAccountName": "app", "containers": [{"name": "c"}]}},
        })
    }

    #[test]
    fn pod_create_is_mutated_with_a_base64_patch() {
        let body = review(pod_create());
        let review = parse(&body).unwrap();
        let Target::PodCreate { namespace, pod } = &review.target else {
            panic!("pod create expected")
        };
        assert_eq!(namespace, "team");
        assert_eq!(pod.service_account(), "app");
        let sa = SaAnnotations::named(&[
            ("role-arn", "arn:aws:iam::111122223333:role/x"),
            ("token-expiration", "10"),
        ])
        .unwrap();
        let outcome = mutate(
            pod,
            "team/app",
            ServiceAccount::Found(Some(&sa)),
            &InjectionConfig::default(),
        );
        assert_eq!(outcome.decision, Decision::Mutated);
        let out: Value = serde_json::from_slice(&respond(&review, Some(&outcome))).unwrap();
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(out["response"]["uid"], "u-1");
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(out["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(patch[0]["op"], "add");
        assert_eq!(patch[0]["path"], "/spec/volumes");
        assert_eq!(out["response"]["warnings"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn other_requests_are_allowed_without_patch_and_echo_the_version() {
        let mut update = pod_create();
        update["operation"] = json!("UPDATE");
        let mut binding = pod_create();
        binding["subResource"] = json!("binding");
        let mut deployment = pod_create();
        deployment["resource"] =
            json!({"group": "apps", "version": "v1", "resource": "deployments"});
        for request in [update, binding, deployment] {
            let mut body: Value = serde_json::from_slice(&review(request)).unwrap();
            body["apiVersion"] = json!("admission.k8s.io/v1beta1");
            let body = serde_json::to_vec(&body).unwrap();
            let review = parse(&body).unwrap();
            assert!(matches!(review.target, Target::Other));
            let out: Value = serde_json::from_slice(&respond(&review, None)).unwrap();
            assert_eq!(
                out,
                json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                       "response": {"uid": "u-1", "allowed": true}})
            );
        }
    }

    #[test]
    fn namespace_falls_back_to_the_object() {
        let mut request = pod_create();
        request.as_object_mut().unwrap().remove("namespace");
        request["object"]["metadata"]["namespace"] = json!("from-object");
        let body = review(request);
        let Target::PodCreate { namespace, .. } = parse(&body).unwrap().target else {
            panic!()
        };
        assert_eq!(namespace, "from-object");
    }

    #[test]
    fn every_bad_body_has_its_message() {
        let without = |field: &str| {
            let mut r = pod_create();
            r.as_object_mut().unwrap().remove(field);
            review(r)
        };
        let mut not_pod = pod_create();
        not_pod["object"] = json!({"spec": {"containers": "nope"}});
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"not json".to_vec(),
                "body is not a JSON AdmissionReview: expected ident at line 1 column 2",
            ),
            (
                br#"{"kind":"Pod","apiVersion":"v1"}"#.to_vec(),
                "kind must be AdmissionReview, got \"Pod\"",
            ),
            (
                br#"{"kind":"AdmissionReview","apiVersion":"v9"}"#.to_vec(),
                "apiVersion must be admission.k8s.io/v1 or v1beta1, got \"v9\"",
            ),
            (
                br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#.to_vec(),
                "AdmissionReview has no request",
            ),
            (without("uid"), "request.uid is missing"),
            (
                without("object"),
                "request.object is missing for a Pod CREATE",
            ),
            (
                without("namespace"),
                "request.namespace is missing for a Pod CREATE",
            ),
            (
                review(not_pod),
                "request.object is not a Pod: invalid type: string \"nope\", expected an array of objects at line 1 column 28",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(parse(&body).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn only_a_v1_pod_on_the_pods_resource_is_a_pod() {
        let with = |field: &str, value: Value| {
            let mut r = pod_create();
            r[field] = value;
            review(r)
        };
        let without = |field: &str| {
            let mut r = pod_create();
            r.as_object_mut().unwrap().remove(field);
            review(r)
        };
        for body in [
            with(
                "kind",
                json!({"group": "", "version": "v1", "kind": "Binding"}),
            ),
            with("kind", json!({"group": "", "version": "v2", "kind": "Pod"})),
            with(
                "kind",
                json!({"group": "example.com", "version": "v1", "kind": "Pod"}),
            ),
            with(
                "resource",
                json!({"group": "", "version": "v1", "resource": "pods/eviction"}),
            ),
            with(
                "resource",
                json!({"group": "", "version": "v1", "resource": "podtemplates"}),
            ),
            without("kind"),
            without("resource"),
        ] {
            assert!(matches!(parse(&body).unwrap().target, Target::Other));
        }
        assert!(matches!(
            parse(&review(pod_create())).unwrap().target,
            Target::PodCreate { .. }
        ));
    }

    #[test]
    fn an_answer_is_bounded_by_its_request() {
        let body = review(pod_create());
        let review = parse(&body).unwrap();
        let Target::PodCreate { pod, .. } = &review.target else {
            panic!()
        };
        let huge = "a".repeat(200_000);
        let sa = SaAnnotations::named(&[
            ("role-arn", "arn:aws:iam::111122223333:role/x"),
            ("audience", &huge),
        ])
        .unwrap();
        let outcome = mutate(
            pod,
            "team/app",
            ServiceAccount::Found(Some(&sa)),
            &Default::default(),
        );
        assert_eq!(outcome.decision, Decision::Mutated);
        let (bytes, outcome) = answer(&review, Some(outcome), body.len());
        let limit = ANSWER_FACTOR * body.len() + ANSWER_SLACK;
        assert!(bytes.len() <= limit, "{} > {limit}", bytes.len());
        let outcome = outcome.unwrap();
        assert_eq!(outcome.decision, Decision::TooLarge);
        let out: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(out["response"]["allowed"], true);
        assert!(out["response"].get("patch").is_none());
        let warning = out["response"]["warnings"][0].as_str().unwrap();
        assert!(
            warning.starts_with("the patch would make the answer ")
                && warning.ends_with("AWS credentials not injected"),
            "{warning}"
        );
        // A patch of usual size passes through untouched.
        let sa = SaAnnotations::named(&[("role-arn", "arn:aws:iam::111122223333:role/x")]).unwrap();
        let outcome = mutate(
            pod,
            "team/app",
            ServiceAccount::Found(Some(&sa)),
            &Default::default(),
        );
        let (bytes, kept) = answer(&review, Some(outcome.clone()), body.len());
        assert_eq!(kept, Some(outcome.clone()));
        assert_eq!(bytes, respond(&review, Some(&outcome)));
    }
}
