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
RBAC rules the controller needs on the objects it watches: exactly the calls the
binary makes, no more (tests/chart/test.sh runs the real binary as this
ServiceAccount and checks the denials). Shared by the ClusterRole (all
namespaces) and the Role (when watchNamespace is set).
- the six kinds: watched (get, list, watch); the finalizer is added and removed
  with a JSON patch (patch). Never created, replaced or deleted.
- their status: written with a server-side apply patch (patch).
- no finalizers subresource: connection Secrets' owner references do not set
  blockOwnerDeletion, so OwnerReferencesPermissionEnforcement does not ask for it.
- Secrets: get (ProviderConfig credentials); create, patch, delete (connection
  Secrets, spec.writeConnectionSecretToRef: a server-side apply patch, which
  needs create as well when the Secret is new). Never list or watch: no Secret
  is read in bulk.
- events.k8s.io Events: create, patch (kube-runtime's Recorder).
Leases are granted apart (cloudkit.leaseRules), in the release namespace only, and
only when leader election is on.
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
- apiGroups:
    - cloudkit.dev
  resources:
    - providerconfigs/status
    - buckets/status
    - tables/status
    - queues/status
    - topics/status
    - functions/status
  verbs:
    - patch
- apiGroups:
    - ""
  resources:
    - secrets
  verbs:
    - get
    - create
    - patch
    - delete
    {{- if eq (include "cloudkit.secretAccess" .) "watch" }}
    - list
    - watch
    {{- end }}
- apiGroups:
    - events.k8s.io
  resources:
    - events
  verbs:
    - create
    - patch
{{- end }}

{{/*
Refuses values that would run two controllers at once: there is no leader
election yet, so two would reconcile the same objects.
*/}}
{{- define "cloudkit.validate" -}}
{{- $strategy := (.Values.strategy).type | default "Recreate" }}
{{- if and (ne $strategy "Recreate") (not (include "cloudkit.leaderElection" .)) }}
{{- fail (printf "strategy.type=%s needs leader election: without it the old and the new controller reconcile at once during an upgrade. Set leaderElection.enabled=true (or replicaCount > 1), or use Recreate." $strategy) }}
{{- end }}
{{- end }}

{{/*
"true" when replicas elect a leader: asked for, or needed by more than one replica.
*/}}
{{- define "cloudkit.leaderElection" -}}
{{- if or (.Values.leaderElection).enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
What kube-lease-manager does with the Lease: reads it, creates it the first time,
and takes, renews and gives it up with server-side apply patches.
*/}}
{{- define "cloudkit.leaseRules" -}}
- apiGroups:
    - coordination.k8s.io
  resources:
    - leases
  verbs:
    - get
    - create
    - patch
{{- end }}

{{/*
How the controller reads credentials Secrets: watch (list and watch granted) or get.
*/}}
{{- define "cloudkit.secretAccess" -}}
{{- $access := .Values.controller.secretAccess | default "watch" -}}
{{- if not (has $access (list "watch" "get")) -}}
{{- fail (printf "controller.secretAccess=%s: use watch (list and watch on Secrets; an idle controller reads none) or get (get only; each credentials Secret is read again every 30 s)" $access) -}}
{{- end -}}
{{- $access -}}
{{- end }}
