{{/* Chart name, overridable. */}}
{{- define "llm-canary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: "<release>-<chart>" unless the release name already contains the chart name. */}}
{{- define "llm-canary.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "llm-canary.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the controller pods; never change them after install. */}}
{{- define "llm-canary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-canary.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Common labels on every object. */}}
{{- define "llm-canary.labels" -}}
helm.sh/chart: {{ include "llm-canary.chart" . }}
{{ include "llm-canary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llm-canary
{{- end }}

{{/* ServiceAccount the controller runs as. */}}
{{- define "llm-canary.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-canary.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Controller image reference; the tag defaults to appVersion. No image is published for
llm-canary, so the repository is the one you build and push to (no default that would not
exist). */}}
{{- define "llm-canary.image" -}}
{{- $repository := required "image.repository is required: no llm-canary image is published. Build it with scripts/build-image, push it to your registry (scripts/build-image --push REGISTRY/llm-canary:TAG) and set image.repository=REGISTRY/llm-canary (README: Build the image)" .Values.image.repository }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Namespace the controller watches: empty = all, except namespaced RBAC pins one. */}}
{{- define "llm-canary.watchNamespace" -}}
{{- if .Values.rbac.namespaced }}
{{- default .Release.Namespace .Values.controller.watchNamespace }}
{{- else }}
{{- .Values.controller.watchNamespace }}
{{- end }}
{{- end }}

{{/* Name of the leader-election Lease (in the release namespace). */}}
{{- define "llm-canary.leaseName" -}}
{{- default (printf "%s-leader" (include "llm-canary.fullname" .) | trunc 63 | trimSuffix "-") .Values.controller.leaderElection.leaseName }}
{{- end }}

{{/* Claim backing /data when persistence is enabled. */}}
{{- define "llm-canary.claimName" -}}
{{- default (printf "%s-data" (include "llm-canary.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}
