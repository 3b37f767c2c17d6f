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
{{- if and (eq .Values.secretLookup "none") (ne .Values.missingSecret "warn") }}
{{- fail (printf "missingSecret=%s has no effect with secretLookup=none: set secretLookup=keys" .Values.missingSecret) }}
{{- end }}
{{- if .Values.profiling.enabled }}
{{- $taken := dict (toString .Values.webhook.port) "webhook.port" (toString .Values.metrics.port) "metrics.port" (toString .Values.healthProbePort) "healthProbePort" }}
{{- with get $taken (toString .Values.profiling.port) }}
{{- fail (printf "profiling.port=%v is %s's port too: choose another" $.Values.profiling.port .) }}
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when flowauth talks to the API server at all (and so mounts a token and records Events). */}}
{{- define "flowauth.needsAPI" -}}
{{- if or .Values.namespaceDefaults (eq (include "flowauth.tlsMode" .) "self-managed") (eq .Values.secretLookup "keys") .Values.policy.requireAllowList }}true{{- end }}
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
