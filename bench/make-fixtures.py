#!/usr/bin/env python3
"""Writes the load-test fixtures for irsa-webhook (standard library only).

  service-accounts.yaml   N ServiceAccounts over 100 namespaces (multi-document YAML), about
                          half annotated with eks.amazonaws.com/role-arn; the fixture pod's
                          ServiceAccount (team-042/checkout-api) is always there and annotated.
  admission-review.json   The AdmissionReview (admission.k8s.io/v1) that the API server sends a
                          mutating webhook for a pod that a ReplicaSet of a Deployment creates:
                          generateName and no name yet, ownerReferences, pod-template-hash,
                          managedFields of kube-controller-manager, API defaults applied, the
                          kube-api-access projected volume and the default NoExecute tolerations
                          added by the built-in admission plugins, compact JSON as sent on the wire.

Usage: make-fixtures.py [--out DIR] [--service-accounts N] [--review-only]
"""

import argparse
import json
import os
import sys

NAMESPACE = "team-042"
SERVICE_ACCOUNT = "checkout-api"
NAMESPACES = 100
ACCOUNT_ID = "111122223333"
RS_HASH = "7d9f8c6b5d"
RS_UID = "5f0c1b7e-3a52-4d8e-9b61-2c7a9e4f1d30"
REVIEW_UID = "0df28fbd-5f5f-11e8-bc74-36e6bb280816"


def service_accounts_yaml(n):
    """N ServiceAccounts; the fixture's first, then sa-NNNNN spread over the namespaces."""
    docs = [sa_doc(NAMESPACE, SERVICE_ACCOUNT, f"arn:aws:iam::{ACCOUNT_ID}:role/checkout-api")]
    for i in range(1, n):
        ns = f"team-{i % NAMESPACES:03d}"
        name = f"sa-{i:06d}"
        role = f"arn:aws:iam::{ACCOUNT_ID}:role/{ns}-{name}" if i % 2 == 0 else None
        docs.append(sa_doc(ns, name, role))
    return "".join(docs)


def sa_doc(namespace, name, role):
    lines = [
        "---",
        "apiVersion: v1",
        "kind: ServiceAccount",
        "metadata:",
        f"  name: {name}",
        f"  namespace: {namespace}",
        "  labels:",
        "    app.kubernetes.io/managed-by: platform",
    ]
    if role:
        lines += ["  annotations:", f"    eks.amazonaws.com/role-arn: {role}"]
    return "\n".join(lines) + "\n"


# --- the pod -------------------------------------------------------------------------------------


def env(name, value):
    return {"name": name, "value": value}


def env_ref(name, kind, ref_name, key):
    return {"name": name, "valueFrom": {kind: {"name": ref_name, "key": key}}}


def env_field(name, path):
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def probe(path, port, initial=None, period=10, failure=3):
    p = {
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": period,
        "successThreshold": 1,
        "failureThreshold": failure,
    }
    if initial is not None:
        p["initialDelaySeconds"] = initial
    return p


def template():
    """The pod template of the Deployment, defaulted as the API server stores it in the ReplicaSet."""
    labels = {
        "app.kubernetes.io/name": "checkout-api",
        "app.kubernetes.io/version": "1.14.2",
        "pod-template-hash": RS_HASH,
    }
    annotations = {
        "kubectl.kubernetes.io/restartedAt": "2024-05-02T09:14:27Z",
    }
    app = {
        "name": "app",
        "image": "registry.example.com/shop/checkout-api:1.14.2",
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        ],
        "env": [
            env("APP_ENV", "production"),
            env("LOG_LEVEL", "info"),
            env("LOG_FORMAT", "json"),
            env("HTTP_PORT", "8080"),
            env("METRICS_PORT", "9090"),
            env("ORDERS_TABLE", "shop-orders-prod"),
            env("PAYMENTS_QUEUE", "payments-prod"),
            env("CART_URL", "http://cart:8080"),
            env("OTEL_ENDPOINT", "http://otel:4317"),
            env("OTEL_SERVICE_NAME", "checkout-api"),
            env("GOMAXPROCS", "2"),
            env_ref("DATABASE_PASSWORD", "secretKeyRef", "checkout-db", "password"),
            env_ref("FEATURE_FLAGS", "configMapKeyRef", "checkout-config", "feature-flags"),
            env_field("POD_NAME", "metadata.name"),
            env_field("POD_NAMESPACE", "metadata.namespace"),
            env_field("NODE_NAME", "spec.nodeName"),
        ],
        "resources": {
            "limits": {"cpu": "1", "memory": "512Mi"},
            "requests": {"cpu": "250m", "memory": "256Mi"},
        },
        "volumeMounts": [
            {"name": "config", "readOnly": True, "mountPath": "/etc/checkout"},
            {"name": "cache", "mountPath": "/var/cache/checkout"},
        ],
        "livenessProbe": probe("/healthz", "http", initial=10),
        "readinessProbe": probe("/readyz", "http", period=5),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    proxy = {
        "name": "envoy",
        "image": "envoyproxy/envoy:v1.30.1",
        "ports": [{"name": "proxy", "containerPort": 15001, "protocol": "TCP"}],
        "env": [
            env("ENVOY_UID", "0"),
            env("ENVOY_ADMIN_PORT", "15000"),
            env_field("POD_IP", "status.podIP"),
            env_field("POD_NAMESPACE", "metadata.namespace"),
        ],
        "resources": {
            "limits": {"cpu": "500m", "memory": "128Mi"},
            "requests": {"cpu": "50m", "memory": "64Mi"},
        },
        "volumeMounts": [{"name": "config", "readOnly": True, "mountPath": "/etc/envoy", "subPath": "envoy"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    spec = {
        "volumes": [
            {"name": "config", "configMap": {"name": "checkout-config", "defaultMode": 420}},
            {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
        "containers": [app, proxy],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "serviceAccountName": SERVICE_ACCOUNT,
        "serviceAccount": SERVICE_ACCOUNT,
        "securityContext": {"runAsUser": 10001, "fsGroup": 10001},
        "schedulerName": "default-scheduler",
        "tolerations": [
            {"key": "workload", "operator": "Equal", "value": "shop", "effect": "NoSchedule"},
        ],
    }
    return labels, annotations, spec


# Associative lists of the Pod type and their merge keys, for managedFields.
LIST_KEYS = {
    "containers": ("name",),
    "env": ("name",),
    "ports": ("containerPort", "protocol"),
    "volumeMounts": ("mountPath",),
    "volumes": ("name",),
    "ownerReferences": ("uid",),
}


def fields_v1(obj):
    """The FieldsV1 set of `obj` as the structured-merge-diff field manager writes it."""
    out = {}
    for key, value in obj.items():
        name = "f:" + key
        if isinstance(value, dict) and value:
            out[name] = {".": {}, **fields_v1(value)}
        elif isinstance(value, list) and key in LIST_KEYS:
            items = {".": {}}
            for item in value:
                k = {f: item[f] for f in LIST_KEYS[key]}
                items["k:" + json.dumps(k, separators=(",", ":"))] = {".": {}, **fields_v1(item)}
            out[name] = items
        else:
            out[name] = {}
    return out


def pod():
    labels, annotations, spec = template()
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": f"checkout-api-{RS_HASH}",
        "uid": RS_UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    managed = {
        "f:metadata": {
            "f:annotations": {".": {}, **{"f:" + k: {} for k in annotations}},
            "f:generateName": {},
            "f:labels": {".": {}, **{"f:" + k: {} for k in labels}},
            "f:ownerReferences": fields_v1({"ownerReferences": [owner]})["f:ownerReferences"],
        },
        "f:spec": fields_v1(spec),
    }
    metadata = {
        "generateName": f"checkout-api-{RS_HASH}-",
        "namespace": NAMESPACE,
        "creationTimestamp": None,
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [owner],
        "managedFields": [
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2024-05-02T09:14:31Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": managed,
            }
        ],
    }
    # What the built-in admission plugins add before the mutating webhooks run.
    spec["volumes"].append(
        {
            "name": "kube-api-access-x7k2p",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
                "defaultMode": 420,
            },
        }
    )
    spec["volumes"].insert(2, {"name": "tls", "secret": {"secretName": "checkout-tls", "defaultMode": 420}})
    for c in spec["containers"]:
        c["volumeMounts"].append(
            {
                "name": "kube-api-access-x7k2p",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            }
        )
    spec["containers"][0]["volumeMounts"].insert(2, {"name": "tls", "readOnly": True, "mountPath": "/etc/tls"})
    spec["tolerations"] += [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]
    spec["priority"] = 0
    spec["enableServiceLinks"] = True
    spec["preemptionPolicy"] = "PreemptLowerPriority"
    return {"kind": "Pod", "apiVersion": "v1", "metadata": metadata, "spec": spec, "status": {}}


def admission_review():
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": REVIEW_UID,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "8d3e0f0a-1c1f-4c43-a7a4-8b2bbd0f3f7e",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
            },
            "object": pod(),
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".", help="directory to write into (default: .)")
    parser.add_argument("--service-accounts", type=int, default=10000, metavar="N")
    parser.add_argument("--review-only", action="store_true", help="write admission-review.json only")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    review = json.dumps(admission_review(), separators=(",", ":")).encode()
    path = os.path.join(args.out, "admission-review.json")
    with open(path, "wb") as f:
        f.write(review)
    print(f"{path}: {len(review)} bytes")

    if not args.review_only:
        if args.service_accounts < 1:
            sys.exit("--service-accounts must be at least 1")
        text = service_accounts_yaml(args.service_accounts).encode()
        path = os.path.join(args.out, "service-accounts.yaml")
        with open(path, "wb") as f:
            f.write(text)
        annotated = 1 + (args.service_accounts - 1) // 2
        print(f"{path}: {args.service_accounts} ServiceAccounts ({annotated} annotated) in {NAMESPACES} namespaces, {len(text)} bytes")


if __name__ == "__main__":
    main()
