{{- define "flowauth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flowauth.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flowauth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowauth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flowauth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flowauth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "flowauth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flowauth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret with tls.crt and tls.key, whoever writes it. */}}
{{- define "flowauth.certSecretName" -}}
{{- default (printf "%s-certs" (include "flowauth.fullname" .)) .Values.certs.secretName }}
{{- end }}

{{/* Who provides the serving certificate: cert-manager, the user (caBundle), or flowauth itself. */}}
{{- define "flowauth.tlsMode" -}}
{{- if .Values.certManager.enabled }}cert-manager
{{- else if .Values.certs.caBundle }}provided
{{- else }}self-managed
{{- end }}
{{- end }}

{{- define "flowauth.serviceDNSName" -}}
{{ include "flowauth.fullname" . }}.{{ .Release.Namespace }}.svc
{{- end }}

{{/* Checks that a schema cannot express because they span several values. */}}
{{- define "flowauth.validate" -}}
{{- if and .Values.certManager.enabled .Values.certs.caBundle }}
{{- fail "certManager.enabled and certs.caBundle are exclusive: cert-manager injects the CA itself; unset certs.caBundle or certManager.enabled" }}
{{- end }}
{{- if and .Values.certs.caBundle (not .Values.certs.secretName) }}
{{- fail "certs.caBundle needs certs.secretName: the existing Secret (tls.crt, tls.key) signed by that CA" }}
{{- end }}
{{- if not .Values.clusterConnection }}
{{- $needs := list }}
{{- if .Values.namespaceDefaults }}{{ $needs = append $needs "namespaceDefaults: true" }}{{ end }}
{{- if eq .Values.secretLookup "keys" }}{{ $needs = append $needs "secretLookup: keys" }}{{ end }}
{{- if .Values.policy.requireAllowList }}{{ $needs = append $needs "policy.requireAllowList: true" }}{{ end }}
{{- if eq (include "flowauth.tlsMode" .) "self-managed" }}{{ $needs = append $needs "self-managed TLS (set certs.secretName or certManager.enabled)" }}{{ end }}
{{- with $needs }}
{{- fail (printf "clusterConnection: false runs flowauth without the API server, which %s needs" (join ", " .)) }}
{{- end }}
{{- end }}
{{- if and (eq .Values.secretLookup "none") (ne .Values.missingSecret "warn") }}
{{- fail (printf "missingSecret=%s has no effect with secretLookup=none: set secretLookup=keys" .Values.missingSecret) }}
{{- end }}
{{- $ports := include "flowauth.ports" . | fromYaml }}
{{- if .Values.profiling.enabled }}
{{- $taken := dict (toString $ports.webhook) $ports.webhookValue (toString $ports.metrics) $ports.metricsValue (toString $ports.health) $ports.healthValue }}
{{- with get $taken (toString .Values.profiling.port) }}
{{- fail (printf "profiling.port=%v is %s's port too: choose another" $.Values.profiling.port .) }}
{{- end }}
{{- end }}
{{- if .Values.hostNetwork.enabled }}
{{- /* Ports the node's own Kubernetes components hold on the host network (kubelet, its healthz,
       its read-only port, kube-proxy's metrics and healthz, the controller manager, the scheduler,
       the API server, etcd), and the NodePort range kube-proxy may reserve. */}}
{{- $node := dict "10250" "the kubelet's API" "10248" "the kubelet's healthz" "10255" "the kubelet's read-only port" "10249" "kube-proxy's metrics" "10256" "kube-proxy's healthz" "10257" "kube-controller-manager's" "10259" "kube-scheduler's" "6443" "the API server's" "2379" "etcd's" "2380" "etcd's peer port" }}
{{- range $value, $port := dict $ports.webhookValue $ports.webhook $ports.metricsValue $ports.metrics $ports.healthValue $ports.health }}
{{- with get $node (toString $port) }}
{{- fail (printf "%s=%v is %s port on every node: on the host network choose another" $value $port .) }}
{{- end }}
{{- if and (ge (int $port) 30000) (le (int $port) 32767) }}
{{- fail (printf "%s=%v is in the NodePort range (30000-32767), which kube-proxy may hold on every node: choose another" $value $port) }}
{{- end }}
{{- end }}
{{- if or (eq (int $ports.webhook) (int $ports.metrics)) (eq (int $ports.webhook) (int $ports.health)) (eq (int $ports.metrics) (int $ports.health)) }}
{{- fail (printf "hostNetwork ports must differ: webhookPort=%v metricsPort=%v healthProbePort=%v" $ports.webhook $ports.metrics $ports.health) }}
{{- end }}
{{- if .Values.profiling.enabled }}
{{- fail "profiling.enabled with hostNetwork.enabled would serve Go's profiles, unauthenticated, on the node's loopback, where every host-network pod and process of the node reaches them: profile with hostNetwork.enabled=false" }}
{{- end }}
{{- if .Values.networkPolicy.enabled }}
{{- fail "networkPolicy.enabled has no effect on pods on the host network (NetworkPolicy selects pod-network pods only): restrict hostNetwork.webhookPort with the nodes' firewall or security group instead, and unset networkPolicy.enabled" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The ports the webhook serves on: the pod network's (webhook.port, metrics.port,
     healthProbePort) or, with hostNetwork.enabled, the host network's, with the value each came
     from for error messages. */}}
{{- define "flowauth.ports" -}}
{{- if .Values.hostNetwork.enabled }}
webhook: {{ .Values.hostNetwork.webhookPort }}
webhookValue: hostNetwork.webhookPort
metrics: {{ .Values.hostNetwork.metricsPort }}
metricsValue: hostNetwork.metricsPort
health: {{ .Values.hostNetwork.healthProbePort }}
healthValue: hostNetwork.healthProbePort
{{- else }}
webhook: {{ .Values.webhook.port }}
webhookValue: webhook.port
metrics: {{ .Values.metrics.port }}
metricsValue: metrics.port
health: {{ .Values.healthProbePort }}
healthValue: healthProbePort
{{- end }}
{{- end }}

{{/* "true" when flowauth talks to the API server at all (and so mounts a token, reads Namespaces'
allow-lists and records Events): unless clusterConnection is false, an explicit choice. */}}
{{- define "flowauth.needsAPI" -}}
{{- if .Values.clusterConnection }}true{{- end }}
{{- end }}

{{/* The webhook configurations' namespaceSelector as a label selector string, for the binary's
--namespace-selector: it then serves exactly the namespaces the API server sends. */}}
{{- define "flowauth.namespaceSelectorString" -}}
{{- $parts := list }}
{{- range $k, $v := .Values.webhook.namespaceSelector.matchLabels }}
{{- $parts = append $parts (printf "%s=%s" $k $v) }}
{{- end }}
{{- range .Values.webhook.namespaceSelector.matchExpressions }}
{{- if eq .operator "In" }}{{ $parts = append $parts (printf "%s in (%s)" .key (join "," .values)) }}
{{- else if eq .operator "NotIn" }}{{ $parts = append $parts (printf "%s notin (%s)" .key (join "," .values)) }}
{{- else if eq .operator "Exists" }}{{ $parts = append $parts .key }}
{{- else if eq .operator "DoesNotExist" }}{{ $parts = append $parts (printf "!%s" .key) }}
{{- end }}
{{- end }}
{{- $parts = append $parts (printf "kubernetes.io/metadata.name notin (%s,kube-system)" .Release.Namespace) }}
{{- join "," $parts }}
{{- end }}

{{- /* flowauth.alertFor: an alert rule's `for` line, none for 0s (fires at the first evaluation). */}}
{{- define "flowauth.alertFor" -}}
{{- if not (regexMatch "^0+(ms|s|m|h|d|w|y)$" .) }}
      for: {{ . }}
{{- end }}
{{- end }}

{{/* flowauth.admissionMode: how flowauth is in the pod's path, from admission.mode: "webhook",
"policy" (admission policies the API server runs, no webhook), or "both" (the policies inject, the
webhook stays as a second pass that recognises their work, failurePolicy Ignore: the step between
the two when switching, so no flow run is refused or goes uninjected). auto is policy where the
API server serves MutatingAdmissionPolicy in admissionregistration.k8s.io/v1 (Kubernetes 1.36+). */}}
{{- define "flowauth.admissionMode" -}}
{{- $mode := .Values.admission.mode }}
{{- $served := .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy" }}
{{- if eq $mode "auto" }}{{ $mode = ternary "policy" "webhook" $served }}{{ end }}
{{- if ne $mode "webhook" }}
{{- if not $served }}
{{- fail (printf "admission.mode=%s needs MutatingAdmissionPolicy in admissionregistration.k8s.io/v1, which Kubernetes serves from 1.36; this cluster is %s: use admission.mode=webhook, or auto, which picks the webhook where policies are not served" $mode .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if .Values.secretMap }}
{{- fail (printf "admission.mode=%s with a secretMap: the policies hold the map in their CEL, which Helm cannot compile; apply `kubectl flowauth policy --secret-map FILE` instead, or use admission.mode=webhook" $mode) }}
{{- end }}
{{- if and (eq $mode "policy") (eq .Values.secretLookup "keys") }}
{{- fail "admission.mode=policy with secretLookup=keys: a policy cannot read Secrets, so a missing one is not told at apply time; set secretLookup=none, or keep admission.mode=webhook" }}
{{- end }}
{{- end }}
{{- $mode }}
{{- end }}

{{/* flowauth.runsWebhook: "true" unless admission.mode is policy. */}}
{{- define "flowauth.runsWebhook" -}}
{{- if ne (include "flowauth.admissionMode" .) "policy" }}true{{- end }}
{{- end }}

{{/* flowauth.namespaceSelector: the namespaces served, whatever webhook.namespaceSelector says
never the release namespace (flowauth could not start its own pods) nor kube-system. */}}
{{- define "flowauth.namespaceSelector" -}}
{{- with .Values.webhook.namespaceSelector.matchLabels -}}
matchLabels:
  {{- toYaml . | nindent 2 }}
{{ end -}}
matchExpressions:
{{- with .Values.webhook.namespaceSelector.matchExpressions }}
{{- toYaml . | nindent 0 }}
{{- end }}
- key: kubernetes.io/metadata.name
  operator: NotIn
  values: [{{ .Release.Namespace }}, kube-system]
{{- end }}

{{/* flowauth.failurePolicy: webhook.failurePolicy, but Ignore in admission.mode both: the policies
inject meanwhile, and the webhook's pods may be starting (switching from policy) or stopping. */}}
{{- define "flowauth.failurePolicy" -}}
{{- if eq (include "flowauth.admissionMode" .) "both" }}Ignore{{ else }}{{ .Values.webhook.failurePolicy }}{{ end }}
{{- end }}
