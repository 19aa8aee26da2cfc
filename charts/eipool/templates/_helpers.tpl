{{/*
Names and the settings every eipool container shares. Each template takes a context whose
.Values are eipool's values and which has .Release: this chart's own `.`, or from your chart
`(dict "Values" .Values.eipool "Release" .Release)`.
*/}}

{{/* The full name: fullnameOverride, else <release>-eipool (the release name when it contains "eipool"). */}}
{{- define "eipool.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "eipool" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-eipool" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "eipool.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "eipool.fullname" .) -}}
{{- end -}}

{{- define "eipool.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* Labels of every object of this chart. */}}
{{- define "eipool.labels" -}}
app.kubernetes.io/part-of: eipool
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The label the PodMonitor selects: every agent's pod and the exporter's carry it. */}}
{{- define "eipool.scrapeLabel" -}}
eipool/metrics: {{ include "eipool.fullname" . | quote }}
{{- end -}}

{{/* The environment of every eipool container: the shared settings, the Redis URL and TLS files,
and `extra` (more env entries as YAML, e.g. the agent's pod IP). Takes (dict "ctx" . "extra" "…"). */}}
{{- define "eipool.envWith" -}}
{{- $v := .ctx.Values -}}
{{- $list := include "eipool.envList" .ctx | trim -}}
envFrom:
  - configMapRef:
      name: {{ include "eipool.fullname" .ctx }}
{{- if or $list .extra }}
env:
  {{- with $list }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with .extra }}
  {{- . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "eipool.env" -}}
{{- include "eipool.envWith" (dict "ctx" . "extra" "") -}}
{{- end -}}

{{/* The env entries for Redis: its URL from the Secret, the TLS files (none without them). */}}
{{- define "eipool.envList" -}}
{{- with .Values.redis.existingSecret }}
- name: EIPOOL_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.redis.urlKey }}
{{- end }}
{{- if .Values.redis.caSecret }}
- name: EIPOOL_REDIS_CA_FILE
  value: /etc/eipool/redis-ca/{{ .Values.redis.caKey }}
{{- end }}
{{- if .Values.redis.clientCertSecret }}
- name: EIPOOL_REDIS_CLIENT_CERT
  value: /etc/eipool/redis-client/tls.crt
- name: EIPOOL_REDIS_CLIENT_KEY
  value: /etc/eipool/redis-client/tls.key
{{- end }}
{{- end -}}

{{/* Mounts of the Redis TLS Secrets in an eipool container (none without them). */}}
{{- define "eipool.redisTlsMounts" -}}
{{- if .Values.redis.caSecret }}
- name: eipool-redis-ca
  mountPath: /etc/eipool/redis-ca
  readOnly: true
{{- end }}
{{- if .Values.redis.clientCertSecret }}
- name: eipool-redis-client
  mountPath: /etc/eipool/redis-client
  readOnly: true
{{- end }}
{{- end -}}

{{/* The Redis TLS Secrets as volumes (none without them). */}}
{{- define "eipool.redisTlsVolumes" -}}
{{- if .Values.redis.caSecret }}
- name: eipool-redis-ca
  secret:
    secretName: {{ .Values.redis.caSecret }}
{{- end }}
{{- if .Values.redis.clientCertSecret }}
- name: eipool-redis-client
  secret:
    secretName: {{ .Values.redis.clientCertSecret }}
{{- end }}
{{- end -}}

{{/* The securityContext of every eipool container. */}}
{{- define "eipool.securityContext" -}}
securityContext:
  runAsNonRoot: true
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: ["ALL"]
{{- end -}}
