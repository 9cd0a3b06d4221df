//! CPU cost of one admission without I/O, on the Deployment-pod AdmissionReview written by
//! `bench/make-fixtures.py` (checked in as `bench/fixtures/admission-review.json`).
//!
//! `cargo bench --bench mutation`; see bench/README.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use irsa_webhook::injection::config::InjectionConfig;
use irsa_webhook::injection::identity::SaAnnotations;
use irsa_webhook::injection::mutation::{Decision, ServiceAccount, mutate};
use irsa_webhook::injection::pod::PodView;
use irsa_webhook::webhook::admission::{self, Target};

/// Same allocator as the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REVIEW: &str = include_str!("../bench/fixtures/admission-review.json");

fn service_account() -> SaAnnotations {
    SaAnnotations::from_annotations(
        &InjectionConfig::default(),
        [(
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::111122223333:role/checkout-api",
        )],
    )
    .expect("a role")
}

/// The pod object inside the review, as its own JSON.
fn pod_json() -> String {
    let review: serde_json::Value = serde_json::from_str(REVIEW).unwrap();
    review["request"]["object"].to_string()
}

fn benches(c: &mut Criterion) {
    let cfg = InjectionConfig::default();
    let sa = service_account();
    let body = REVIEW.as_bytes();

    // What the handler does with a complete body (minus the index lookup and metrics).
    let admit = |body: &[u8]| -> Vec<u8> {
        let review = admission::parse(body).expect("the fixture is a valid review");
        let Target::PodCreate { namespace, pod } = &review.target else {
            panic!("the fixture is a pod CREATE")
        };
        let name = pod.service_account();
        let outcome = mutate(
            pod,
            &format!("{namespace}/{name}"),
            ServiceAccount::Found(Some(&sa)),
            &cfg,
        );
        admission::respond(&review, Some(&outcome))
    };
    let answer = admit(body);
    assert!(answer.windows(14).any(|w| w == b"\"allowed\":true"));
    assert!(answer.windows(9).any(|w| w == b"\"patch\":\""));

    let mut group = c.benchmark_group("admission");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse+mutate+respond", |b| {
        b.iter(|| admit(black_box(body)))
    });
    group.bench_function("parse", |b| {
        b.iter(|| admission::parse(black_box(body)).expect("valid"))
    });
    // The pod alone: what a single-pass parse of the review would cost (see bench/README.md).
    let pod_json = pod_json();
    group.bench_function("parse pod only", |b| {
        b.iter(|| PodView::from_slice(black_box(pod_json.as_bytes())).expect("valid"))
    });
    group.finish();

    let pod = PodView::from_slice(pod_json.as_bytes()).unwrap();
    assert_eq!(pod.service_account(), "checkout-api");
    let outcome = mutate(
        &pod,
        "team-042/checkout-api",
        ServiceAccount::Found(Some(&sa)),
        &cfg,
    );
    assert_eq!(outcome.decision, Decision::Mutated);
    c.bench_function("mutate", |b| {
        b.iter(|| {
            mutate(
                black_box(&pod),
                "team-042/checkout-api",
                ServiceAccount::Found(Some(&sa)),
                &cfg,
            )
        })
    });
}

/// The same admission for an AWS, an Azure and a Google Cloud ServiceAccount: the clouds'
/// profiles should cost about what AWS costs (within 10 %, see bench/README.md).
fn by_cloud(c: &mut Criterion) {
    let cfg = InjectionConfig::default();
    let azure_review = REVIEW.replacen(
        r#""labels":{"app.kubernetes.io/name""#,
        r#""labels":{"azure.workload.identity/use":"true","app.kubernetes.io/name""#,
        1,
    );
    let keys = |pairs: &[(&str, &str)]| {
        SaAnnotations::from_annotations(&cfg, pairs.iter().copied()).expect("annotations kept")
    };
    let cases = [
        ("aws", REVIEW.to_owned(), service_account()),
        (
            "azure",
            azure_review,
            keys(&[
                (
                    "azure.workload.identity/client-id",
                    "11111111-2222-3333-4444-555555555555",
                ),
                (
                    "azure.workload.identity/tenant-id",
                    "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                ),
            ]),
        ),
        (
            "gcp",
            REVIEW.to_owned(),
            keys(&[(
                "cloud.google.com/workload-identity-provider",
                "projects/123456/locations/global/workloadIdentityPools/on-prem/providers/cluster-a",
            )]),
        ),
    ];
    let mut group = c.benchmark_group("admission by cloud");
    for (cloud, review, sa) in &cases {
        let admit = |body: &[u8]| -> Vec<u8> {
            let review = admission::parse(body).expect("a valid review");
            let Target::PodCreate { namespace, pod } = &review.target else {
                panic!("a pod CREATE")
            };
            let key = format!("{namespace}/{}", pod.service_account());
            let outcome = mutate(pod, &key, ServiceAccount::Found(Some(sa)), &cfg);
            assert_eq!(outcome.decision, Decision::Mutated, "{cloud}");
            admission::respond(&review, Some(&outcome))
        };
        admit(review.as_bytes());
        group.bench_function(*cloud, |b| b.iter(|| admit(black_box(review.as_bytes()))));
    }
    group.finish();
}

criterion_group!(mutation, benches, by_cloud);
criterion_main!(mutation);
