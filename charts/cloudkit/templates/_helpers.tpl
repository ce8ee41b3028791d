{{/*
Expand the name of the chart.
*/}}
{{- define "cloudkit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
Truncated at 63 chars because some Kubernetes name fields are limited to that
(by the DNS naming spec). If the release name contains the chart name it is
used as the full name.
*/}}
{{- define "cloudkit.fullname" -}}
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

{{/*
Chart name and version as used by the chart label.
*/}}
{{- define "cloudkit.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "cloudkit.labels" -}}
helm.sh/chart: {{ include "cloudkit.chart" . }}
{{ include "cloudkit.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cloudkit
app.kubernetes.io/component: controller
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "cloudkit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudkit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the service account to use.
*/}}
{{- define "cloudkit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cloudkit.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference.
*/}}
{{- define "cloudkit.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/*
RBAC rules the controller needs on the objects it watches. Shared by the
ClusterRole (all namespaces) and the Role (when watchNamespace is set).
*/}}
{{- define "cloudkit.rbacRules" -}}
- apiGroups:
    - cloudkit.dev
  resources:
    - providerconfigs
    - buckets
    - tables
    - queues
    - topics
    - functions
  verbs:
    - get
    - list
    - watch
    - patch
    - update
- apiGroups:
    - cloudkit.dev
  resources:
    - providerconfigs/status
    - buckets/status
    - tables/status
    - queues/status
    - topics/status
    - functions/status
    - providerconfigs/finalizers
    - buckets/finalizers
    - tables/finalizers
    - queues/finalizers
    - topics/finalizers
    - functions/finalizers
  verbs:
    - get
    - list
    - watch
    - patch
    - update
- apiGroups:
    - ""
  resources:
    - secrets
  verbs:
    # get: ProviderConfig credentials; create, patch, delete: connection Secrets
    # (spec.writeConnectionSecretToRef). Never list or watch: no Secret is read in bulk.
    - get
    - create
    - patch
    - delete
- apiGroups:
    - events.k8s.io
  resources:
    - events
  verbs:
    - create
    - patch
- apiGroups:
    - ""
  resources:
    - events
  verbs:
    - create
    - patch
{{ include "cloudkit.leaseRules" . }}
{{- end }}

{{/*
Lease rules (leader election).
*/}}
{{- define "cloudkit.leaseRules" -}}
- apiGroups:
    - coordination.k8s.io
  resources:
    - leases
  verbs:
    - get
    - create
    - update
{{- end }}
