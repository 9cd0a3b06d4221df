//! A second mutating webhook for reinvocation tests: it adds a container named `late`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The running sidecar-adding webhook; stops when dropped.
pub struct SidecarWebhook {
    pub addr: std::net::SocketAddr,
    pub ca_pem: String,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl SidecarWebhook {
    /// Starts on a free loopback port, on the current runtime.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bundle = super::write_certs(dir.path());
        let tls = irsa_webhook::serving::tls::ReloadingConfig::load(
            dir.path().join("tls.crt"),
            dir.path().join("tls.key"),
            |_| {},
        )
        .unwrap();
        let listener = std::net::TcpListener::bind((super::webhook_host(), 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let router = Router::new().route("/mutate", post(add_late_container));
        tokio::spawn(irsa_webhook::serving::server::serve(
            TcpListener::from_std(listener).unwrap(),
            Some(Arc::new(tls)),
            router,
            irsa_webhook::serving::server::Limits::default(),
            irsa_webhook::serving::shutdown::Shutdown::with(stop.clone()),
        ));
        Self {
            addr,
            ca_pem: bundle.ca_cert,
            stop,
            _dir: dir,
        }
    }

    /// The URL to register.
    pub fn url(&self) -> String {
        format!("https://{}/mutate", self.addr)
    }
}

impl Drop for SidecarWebhook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn add_late_container(body: Bytes) -> ([(&'static str, &'static str); 1], String) {
    let review: Value = serde_json::from_slice(&body).unwrap();
    let request = &review["request"];
    let has_late = request["object"]["spec"]["containers"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["name"] == "late"));
    let mut response = json!({"uid": request["uid"], "allowed": true});
    if !has_late {
        let patch = json!([{"op": "add", "path": "/spec/containers/-",
            "value": {"name": "late", "image": "registry.example/late:1"}}]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    }
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    ([("content-type", "application/json")], review.to_string())
}
