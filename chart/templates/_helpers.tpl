{{/* Names, labels and the values every template shares. */}}

{{- define "irsa-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name; 52 characters leave room for "-discovery-tailscale". */}}
{{- define "irsa-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 43 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 43 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 43 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "irsa-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "irsa-webhook.labels" -}}
helm.sh/chart: {{ include "irsa-webhook.chart" . }}
app.kubernetes.io/name: {{ include "irsa-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: irsa-webhook
{{- end }}

{{/* Selector labels; `component` is "webhook" or "discovery". */}}
{{- define "irsa-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "irsa-webhook.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "irsa-webhook.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "irsa-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "irsa-webhook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "irsa-webhook.discovery.fullname" -}}
{{- printf "%s-discovery" (include "irsa-webhook.fullname" .) }}
{{- end }}

{{- define "irsa-webhook.discovery.serviceAccountName" -}}
{{- if .Values.discovery.serviceAccount.create }}
{{- default (include "irsa-webhook.discovery.fullname" .) .Values.discovery.serviceAccount.name }}
{{- else }}
{{- required "discovery.serviceAccount.name is required when discovery.serviceAccount.create is false" .Values.discovery.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the serving certificate (all modes). */}}
{{- define "irsa-webhook.tlsSecretName" -}}
{{- $mode := .Values.certificates.mode }}
{{- if eq $mode "self" }}
{{- default (printf "%s-tls" (include "irsa-webhook.fullname" .)) .Values.certificates.self.secretName }}
{{- else if eq $mode "certManager" }}
{{- default (printf "%s-tls" (include "irsa-webhook.fullname" .)) .Values.certificates.certManager.secretName }}
{{- else if eq $mode "secret" }}
{{- required "certificates.secret.name is required with certificates.mode=secret" .Values.certificates.secret.name }}
{{- else }}
{{- fail (printf "certificates.mode must be self, certManager or secret, not %q" $mode) }}
{{- end }}
{{- end }}

{{/* The names the API server may use for the Service; the serving certificate covers all. */}}
{{- define "irsa-webhook.dnsNames" -}}
{{- $svc := include "irsa-webhook.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) | toJson }}
{{- end }}

{{/* Where certManager and secret modes mount the certificate (a directory: the kubelet swaps
     its ..data symlink on renewal, and the webhook reloads). */}}
{{- define "irsa-webhook.tlsDir" -}}
/etc/irsa-webhook/tls
{{- end }}

{{/* The issuer URL, checked: https, no query or fragment. */}}
{{- define "irsa-webhook.issuerUrl" -}}
{{- $url := required "discovery.issuerUrl is required with discovery.enabled (the public https issuer, equal to the API server's --service-account-issuer)" .Values.discovery.issuerUrl }}
{{- $u := urlParse $url }}
{{- if or (ne $u.scheme "https") (not $u.host) }}
{{- fail (printf "discovery.issuerUrl must be an https:// URL with a host, not %q" $url) }}
{{- end }}
{{- if or $u.query $u.fragment }}
{{- fail (printf "discovery.issuerUrl must have no query or fragment: %q" $url) }}
{{- end }}
{{- $url }}
{{- end }}

{{/* The issuer's host without a port. */}}
{{- define "irsa-webhook.issuerHost" -}}
{{- (urlParse (include "irsa-webhook.issuerUrl" .)).hostname }}
{{- end }}

{{/* The issuer's path without a trailing slash ("" for a bare host). */}}
{{- define "irsa-webhook.issuerPath" -}}
{{- (urlParse (include "irsa-webhook.issuerUrl" .)).path | trimSuffix "/" }}
{{- end }}

{{/* Tailscale: the machine name, checked against the issuer URL Funnel must serve. */}}
{{- define "irsa-webhook.tailscale.hostname" -}}
{{- $host := include "irsa-webhook.issuerHost" . }}
{{- if not (hasSuffix ".ts.net" $host) }}
{{- fail (printf "with discovery.tailscale.enabled the issuer is served by Funnel at https://<hostname>.<tailnet>.ts.net; discovery.issuerUrl has host %q" $host) }}
{{- end }}
{{- $first := first (splitList "." $host) }}
{{- $name := default $first .Values.discovery.tailscale.hostname }}
{{- if ne $name $first }}
{{- fail (printf "discovery.tailscale.hostname %q does not match the issuer host %q: Funnel serves https://<hostname>.<tailnet>.ts.net" $name $host) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "irsa-webhook.tailscale.tag" -}}
{{- $tag := required "discovery.tailscale.tag is required with discovery.tailscale.enabled (e.g. tag:irsa-oidc)" .Values.discovery.tailscale.tag }}
{{- if hasPrefix "tag:" $tag }}{{ $tag }}{{ else }}{{ printf "tag:%s" $tag }}{{ end }}
{{- end }}

{{- define "irsa-webhook.tailscale.stateSecret" -}}
{{- default (printf "%s-tailscale" (include "irsa-webhook.discovery.fullname" .)) .Values.discovery.tailscale.stateSecret }}
{{- end }}

{{/* Hardening shared by every pod and container. */}}
{{- define "irsa-webhook.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
# Mounted Secrets (certificates) are readable by this group, and by no one else.
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "irsa-webhook.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The OIDC bridge's (meigma/k8s-aws-oidc) shortcuts and switches, resolved once into .Values (idempotent, so every template that
reads discovery values includes it first, whatever the rendering order): a top-level issuerUrl
turns the discovery server on, a top-level tailscale.* its Tailscale publisher. A value of a
feature that is switched off is an error naming the switch, never silently ignored.
*/}}
{{- define "irsa-webhook.resolve" -}}
{{- $v := .Values }}
{{- $d := $v.discovery }}
{{- $ts := $d.tailscale }}
{{- if $v.issuerUrl }}
{{- if and $d.issuerUrl (ne $d.issuerUrl $v.issuerUrl) }}
{{- fail (printf "issuerUrl %q and discovery.issuerUrl %q differ: set one (issuerUrl is the short form of discovery.issuerUrl)" $v.issuerUrl $d.issuerUrl) }}
{{- end }}
{{- $_ := set $d "issuerUrl" $v.issuerUrl }}
{{- $_ := set $d "enabled" true }}
{{- end }}
{{- $short := $v.tailscale }}
{{- if or $short.hostname $short.tag $short.oauthSecret.name }}
{{- range $key := list "hostname" "tag" }}
{{- $given := get $short $key }}
{{- if $given }}
{{- if and (get $ts $key) (ne (get $ts $key) $given) }}
{{- fail (printf "tailscale.%s and discovery.tailscale.%s differ: set one (tailscale.* is the short form of discovery.tailscale.*)" $key $key) }}
{{- end }}
{{- $_ := set $ts $key $given }}
{{- end }}
{{- end }}
{{- if $short.oauthSecret.name }}
{{- if and $ts.oauthSecret.name (ne $ts.oauthSecret.name $short.oauthSecret.name) }}
{{- fail "tailscale.oauthSecret.name and discovery.tailscale.oauthSecret.name differ: set one" }}
{{- end }}
{{- $_ := set $ts.oauthSecret "name" $short.oauthSecret.name }}
{{- end }}
{{- $_ := set $ts "enabled" true }}
{{- end }}
{{- if not $d.enabled }}
{{- range $key, $on := dict "issuerUrl" $d.issuerUrl "tailscale.enabled" $ts.enabled "ingress.enabled" $d.ingress.enabled }}
{{- if $on }}
{{- fail (printf "discovery.%s is set but the discovery server is off: set discovery.enabled=true (or the top-level issuerUrl)" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $ts.enabled }}
{{- range $key, $on := dict "hostname" $ts.hostname "tag" $ts.tag "oauthSecret.name" $ts.oauthSecret.name "stateSecret" $ts.stateSecret }}
{{- if $on }}
{{- fail (printf "discovery.tailscale.%s is set but Tailscale is off: set discovery.tailscale.enabled=true" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $d.ingress.enabled }}
{{- range $key, $on := dict "className" $d.ingress.className "tlsSecretName" $d.ingress.tlsSecretName "annotations" $d.ingress.annotations }}
{{- if $on }}
{{- fail (printf "discovery.ingress.%s is set but the Ingress is off: set discovery.ingress.enabled=true" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
topologySpreadConstraints of a Deployment: `constraints` when it is a list, else spread over
zones and nodes (ScheduleAnyway) by `selector`. Call with (dict "root" $ "constraints" ...
"selector" ...).
*/}}
{{- define "irsa-webhook.topologySpread" -}}
{{- if kindIs "slice" .constraints }}
{{- toYaml .constraints }}
{{- else }}
{{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
- maxSkew: 1
  topologyKey: {{ . }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- $.selector | nindent 6 }}
  {{- if semverCompare ">=1.27-0" $.root.Capabilities.KubeVersion.Version }}
  matchLabelKeys:
    - pod-template-hash
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A PodDisruptionBudget for one component, rendered only with more than one replica (one replica
and minAvailable 1 would block every drain). Call with (dict "root" $ "component" ...
"replicas" ... "budget" ...).
*/}}
{{- define "irsa-webhook.pdb" -}}
{{- if and .budget.enabled (gt (int .replicas) 1) }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ ternary (include "irsa-webhook.fullname" .root) (include "irsa-webhook.discovery.fullname" .root) (eq .component "webhook") }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "irsa-webhook.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  minAvailable: {{ .budget.minAvailable }}
  selector:
    matchLabels:
      {{- include "irsa-webhook.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
{{- end }}
{{- end }}

{{/*
How the API server calls the webhook, the same for every entry of the MutatingWebhookConfiguration.
Call with (dict "root" $ "caBundle" ...).
*/}}
{{- define "irsa-webhook.webhookCall" -}}
admissionReviewVersions: ["v1"]
clientConfig:
  service:
    name: {{ include "irsa-webhook.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: /mutate
    port: {{ .root.Values.service.port }}
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
rules:
  - operations: ["CREATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods"]
    scope: Namespaced
failurePolicy: {{ .root.Values.webhook.failurePolicy }}
reinvocationPolicy: {{ .root.Values.webhook.reinvocationPolicy }}
sideEffects: None
timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
matchPolicy: Equivalent
{{- end }}

{{/*
Whole seconds (rounded up) of a duration as the binary's flags take it ("5s", "1m 30s", "500ms").
*/}}
{{- define "irsa-webhook.seconds" -}}
{{- $units := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "sec" 1.0 "secs" 1.0 "second" 1.0 "seconds" 1.0 "m" 60.0 "min" 60.0 "mins" 60.0 "minute" 60.0 "minutes" 60.0 "h" 3600.0 "hr" 3600.0 "hrs" 3600.0 "hour" 3600.0 "hours" 3600.0 }}
{{- $total := 0.0 }}
{{- range (regexFindAll "[0-9]+ *[a-zµ]+" (toString .) -1) }}
{{- $unit := regexReplaceAll "^[0-9]+ *" . "" }}
{{- if not (hasKey $units $unit) }}
{{- fail (printf "%q: unknown unit %q (use ms, s, m or h)" (toString $) $unit) }}
{{- end }}
{{- $total = addf $total (mulf (regexFind "^[0-9]+" . | float64) (get $units $unit)) }}
{{- end }}
{{- ceil $total | int }}
{{- end }}

{{/*
Refuses a grace period that does not cover shutdown delay and timeout: the kubelet would kill a
server that is still draining. Takes (dict "grace" N "delay" D "timeout" T "prefix" "discovery.").
*/}}
{{- define "irsa-webhook.checkGrace" -}}
{{- $need := add (include "irsa-webhook.seconds" .delay | int) (include "irsa-webhook.seconds" .timeout | int) }}
{{- if le (int .grace) $need }}
{{- fail (printf "%sterminationGracePeriodSeconds (%d) must exceed %sshutdownDelay + %sshutdownTimeout (%ds), or the kubelet kills a pod that is still draining" .prefix (int .grace) .prefix .prefix $need) }}
{{- end }}
{{- end }}
