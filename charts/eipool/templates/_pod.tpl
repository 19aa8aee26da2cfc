{{/*
eipool in YOUR media server's pod, without copying YAML. Add this chart as a dependency of your
chart (alias-free: its values live under `eipool:`), then in your Deployment or DaemonSet:

  {{- $eipool := dict "Values" .Values.eipool "Release" .Release }}
  template:
    metadata:
      labels:
        {{- include "eipool.podLabels" $eipool | nindent 8 }}
    spec:
      {{- include "eipool.podSpec" $eipool | nindent 6 }}
      {{- include "eipool.terminationGracePeriod" $eipool | nindent 6 }}
      affinity:
        {{- include "eipool.mediaAntiAffinity" $eipool | nindent 8 }}
      topologySpreadConstraints:
        {{- include "eipool.mediaZoneSpread" $eipool | nindent 8 }}
      initContainers:
        {{- include "eipool.initContainers" $eipool | nindent 8 }}
      volumes:
        {{- include "eipool.volumes" $eipool | nindent 8 }}
      containers:
        - name: media
          command: ["/bin/sh", "-c"]
          args:
            - {{ printf "%s exec my-media-server --public-ip \"$EIPOOL_PUBLIC_IP\"" (include "eipool.mediaStart" $eipool) | quote }}
          livenessProbe:
            {{- include "eipool.mediaLivenessProbe" $eipool | nindent 12 }}
          volumeMounts:
            {{- include "eipool.mediaVolumeMounts" $eipool | nindent 12 }}

The example workload (mediaExample.enabled) is built from exactly these templates.

Why one media pod per node (eipool.mediaAntiAffinity): with hostNetwork, every media pod on a
node maps its address to the node's private IP, so two of them share one Elastic IP, and the
first to stop releases it from under the other. The grace period (eipool.terminationGracePeriod)
lets the agent give the address back after the media server drains; the zone spread
(eipool.mediaZoneSpread) keeps a zone's loss from taking most media servers with it.
scripts/check-deploy fails a render of your chart without any of them.
*/}}

{{/* The label that marks a pod running the agent: one such pod per node (mediaAntiAffinity). */}}
{{- define "eipool.agentLabel" -}}
eipool/agent: "true"
{{- end -}}

{{/* Labels for the pod template: the PodMonitor scrapes the agent by them. */}}
{{- define "eipool.podLabels" -}}
{{ include "eipool.scrapeLabel" . }}
{{ include "eipool.agentLabel" . }}
{{- end -}}

{{/* The pod's termination grace period: the media server's drain plus the agent's release
(agent.terminationGracePeriodSeconds; the default 30 s of Kubernetes is too short). */}}
{{- define "eipool.terminationGracePeriod" -}}
terminationGracePeriodSeconds: {{ int .Values.agent.terminationGracePeriodSeconds }}
{{- end -}}

{{/* Under `affinity:`: at most one pod running the agent per node, of any release or pool (two
would share the node's address; the first to stop releases it under the other). Add your own
nodeAffinity beside it. */}}
{{- define "eipool.mediaAntiAffinity" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector:
        matchLabels:
          {{- include "eipool.agentLabel" . | nindent 10 }}
      topologyKey: kubernetes.io/hostname
{{- end -}}

{{/* Under `topologySpreadConstraints:`: the agent's pods spread over the zones (soft). */}}
{{- define "eipool.mediaZoneSpread" -}}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "eipool.agentLabel" . | nindent 6 }}
{{- end -}}

{{/* Pod-level fields: the IRSA ServiceAccount, the node's network (the Elastic IP is the node's). */}}
{{- define "eipool.podSpec" -}}
serviceAccountName: {{ include "eipool.serviceAccountName" . }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end -}}

{{/* The agent, a native sidecar (Kubernetes >= 1.29): put it FIRST in initContainers. It claims,
writes the env file, serves /metrics from the start, holds the media container back until it
holds an address (startupProbe), verifies the address, and gives it back when the pod stops. */}}
{{- define "eipool.initContainers" -}}
{{- $port := int .Values.agent.port -}}
- name: eipool-agent
  image: {{ include "eipool.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  restartPolicy: Always
  # --listen defaults to the node's private IP: keep this port closed to the internet.
  args:
    - agent
    - --output
    - {{ .Values.agent.envFile }}
    - --timeout
    - {{ .Values.agent.claimTimeout }}
    - --interval
    - {{ .Values.agent.interval }}
    - --ec2-check-every
    - {{ .Values.agent.ec2CheckEvery }}
    - --on-drift
    - {{ .Values.agent.onDrift }}
    {{- if ne $port 9877 }}
    - --listen
    - {{ printf ":%d" $port | quote }}
    {{- end }}
    {{- if .Values.agent.releaseOnExit }}
    - --release-on-exit
    - --release-timeout
    - {{ .Values.agent.releaseTimeout }}
    {{- end }}
  {{- include "eipool.env" . | nindent 2 }}
  ports:
    - name: metrics
      containerPort: {{ $port }}
      protocol: TCP
  startupProbe:
    httpGet: {path: /readyz, port: {{ $port }}}
    periodSeconds: {{ .Values.agent.startupProbe.periodSeconds }}
    failureThreshold: {{ .Values.agent.startupProbe.failureThreshold }}
  livenessProbe:
    httpGet: {path: /healthz, port: {{ $port }}}
    periodSeconds: 10
  readinessProbe:
    httpGet: {path: /readyz, port: {{ $port }}}
    periodSeconds: 5
  {{- if .Values.agent.releaseOnExit }}
  lifecycle:
    preStop:
      exec:
        command: ["eipool", "release", "--env-file", {{ .Values.agent.envFile | quote }}]
  {{- end }}
  volumeMounts:
    - name: eipool
      mountPath: {{ dir .Values.agent.envFile }}
    {{- include "eipool.redisTlsMounts" . | nindent 4 }}
  {{- include "eipool.securityContext" . | nindent 2 }}
  resources:
    {{- toYaml .Values.agent.resources | nindent 4 }}
{{- end -}}

{{/* The pod's volumes: the env file's (shared, in memory), the announced address's, Redis TLS. */}}
{{- define "eipool.volumes" -}}
- name: eipool
  emptyDir:
    medium: Memory
- name: eipool-media-state
  emptyDir:
    medium: Memory
{{- include "eipool.redisTlsVolumes" . }}
{{- end -}}

{{/* The media container's mounts: the env file (read-only) and where it writes down its address. */}}
{{- define "eipool.mediaVolumeMounts" -}}
- name: eipool
  mountPath: {{ dir .Values.agent.envFile }}
  readOnly: true
- name: eipool-media-state
  mountPath: {{ dir .Values.agent.announcedFile }}
{{- end -}}

{{/* What the media container's shell runs before exec'ing the media server: source the env file
and write down the address it will announce. Ends with "&&". */}}
{{- define "eipool.mediaStart" -}}
{{- printf ". %s && echo \"$EIPOOL_PUBLIC_IP\" > %s &&" .Values.agent.envFile .Values.agent.announcedFile -}}
{{- end -}}

{{/* The media container's livenessProbe: fails (once) when the env file names another address than
the one it started on, so the kubelet restarts it on the new one. */}}
{{- define "eipool.mediaLivenessProbe" -}}
exec:
  command:
    - /bin/sh
    - -c
    - {{ printf ". %s && [ \"$EIPOOL_PUBLIC_IP\" = \"$(cat %s)\" ]" .Values.agent.envFile .Values.agent.announcedFile | quote }}
periodSeconds: 5
failureThreshold: 1
{{- end -}}
