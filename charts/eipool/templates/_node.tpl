{{/*
Node mode (mode: node): names and values its templates share.
*/}}

{{- define "eipool.nodeName" -}}
{{- printf "%s-node" (include "eipool.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The taint's key (node.taint is KEY[=VALUE]:EFFECT). */}}
{{- define "eipool.nodeTaintKey" -}}
{{- regexReplaceAll "[=:].*$" .Values.node.taint "" -}}
{{- end -}}

{{/* The taint's value ("" when it has none). */}}
{{- define "eipool.nodeTaintValue" -}}
{{- if regexMatch "^[^:=]*=" .Values.node.taint -}}
{{- regexReplaceAll "^[^:=]*=([^:]*):.*$" .Values.node.taint "${1}" -}}
{{- end -}}
{{- end -}}

{{/* The taint's effect. */}}
{{- define "eipool.nodeTaintEffect" -}}
{{- regexReplaceAll "^.*:" .Values.node.taint "" -}}
{{- end -}}

{{/* The env file on the host: <hostDir>/<pool>.env. */}}
{{- define "eipool.nodeEnvFile" -}}
{{- printf "%s/%s.env" (trimSuffix "/" .Values.node.hostDir) .Values.pool -}}
{{- end -}}
