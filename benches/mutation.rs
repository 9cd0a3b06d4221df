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
    SaAnnotations {
        role_arn: Some("arn:aws:iam::111122223333:role/checkout-api".into()),
        ..Default::default()
    }
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

criterion_group!(mutation, benches);
criterion_main!(mutation);
