{{/* By default the objects' names are the ones manifests/ uses. */}}
{{- define "spo.name" -}}{{ .Values.name }}{{- end -}}

{{- define "spo.leaseName" -}}{{ .Values.leaderElection.leaseName | default .Values.name }}{{- end -}}

{{- define "spo.labels" -}}
app.kubernetes.io/name: {{ include "spo.name" . }}
app.kubernetes.io/part-of: seldon-promotion-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "spo.subject" -}}
- kind: ServiceAccount
  name: {{ include "spo.name" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{/* Bad values stop the install with a message saying what to change. */}}
{{- define "spo.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicas) 1) -}}
{{- fail "replicas: more than one replica needs leaderElection.enabled=true (without it, two replicas would both run every pass)" -}}
{{- end -}}
{{- if not (has .Values.credentials.mode (list "secret" "serviceAccountToken")) -}}
{{- fail (printf "credentials.mode: %q is not one of secret, serviceAccountToken" .Values.credentials.mode) -}}
{{- end -}}
{{- $n := .Values.notifications -}}
{{- if and (or $n.slackKey $n.cloudEventsKey) (not $n.secretName) -}}
{{- fail "notifications: set notifications.secretName, the Secret holding the sinks' URLs" -}}
{{- end -}}
{{- if and .Values.prometheus.bearerTokenSecret (not .Values.prometheus.url) -}}
{{- fail "prometheus.bearerTokenSecret is set but prometheus.url is not" -}}
{{- end -}}
{{- $m := .Values.registry.mlflow -}}
{{- if and (or $m.credentialsSecret $m.caConfigMap) (not $m.trackingUri) -}}
{{- fail "registry.mlflow: credentialsSecret or caConfigMap is set but trackingUri is not" -}}
{{- end -}}
{{- if not (has $m.credentialsType (list "basic" "token")) -}}
{{- fail (printf "registry.mlflow.credentialsType: %q is not one of basic, token" $m.credentialsType) -}}
{{- end -}}
{{- end -}}

{{/* The keys of the MLflow credentials Secret that are mounted, by credentialsType. */}}
{{- define "spo.mlflowCredentialKeys" -}}
{{- if eq .Values.registry.mlflow.credentialsType "token" -}}
token
{{- else -}}
username password
{{- end -}}
{{- end -}}
