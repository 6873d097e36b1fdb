{{/* Names, labels and the environment every Kiln process shares. */}}

{{- define "kiln.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kiln.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "kiln.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "kiln.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kiln.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kiln.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kiln
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "api"). */}}
{{- define "kiln.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kiln.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kiln.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kiln.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kiln.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* An environment variable read from an existing Secret: (dict "name" "DATABASE_URL" "ref" .Values.database "what" "database"). */}}
{{- define "kiln.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "%s.existingSecret is required: the name of an existing Secret holding %s" .what .name) .ref.existingSecret | quote }}
      key: {{ .ref.key | quote }}
{{- end -}}

{{/* What every Kiln process reads: PostgreSQL, Redis (single, Sentinel or Cluster), master keys, logs, traces. */}}
{{- define "kiln.commonEnv" -}}
{{ include "kiln.secretEnv" (dict "name" "DATABASE_URL" "ref" .Values.database "what" "database") }}
{{ include "kiln.secretEnv" (dict "name" "REDIS_URL" "ref" .Values.redis "what" "redis") }}
{{ include "kiln.secretEnv" (dict "name" "KILN_MASTER_KEYS" "ref" .Values.masterKeys "what" "masterKeys") }}
{{- if .Values.redis.sentinel.hosts }}
- name: KILN_REDIS_SENTINELS
  value: {{ join "," .Values.redis.sentinel.hosts | quote }}
- name: KILN_REDIS_SENTINEL_MASTER
  value: {{ required "redis.sentinel.masterName is required with redis.sentinel.hosts" .Values.redis.sentinel.masterName | quote }}
{{- end }}
{{- if .Values.redis.cluster.nodes }}
- name: KILN_REDIS_CLUSTER_NODES
  value: {{ join "," .Values.redis.cluster.nodes | quote }}
{{- end }}
{{- if .Values.redis.passwordSecret.existingSecret }}
{{ include "kiln.secretEnv" (dict "name" "KILN_REDIS_PASSWORD" "ref" .Values.redis.passwordSecret "what" "redis.passwordSecret") }}
{{- end }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: KILN_QUEUE_PREFIX
  value: {{ .Values.queuePrefix | quote }}
{{- if .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.tracing.otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "kiln-%s" .component | quote }}
{{- end }}
{{- range .Values.extraEnv }}
- {{ toYaml . | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{- define "kiln.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsUser }}
fsGroup: {{ .Values.securityContext.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Node needs no writable root: /tmp is an emptyDir. */}}
{{- define "kiln.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
