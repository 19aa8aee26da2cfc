{{/*
eipool in YOUR media server's pod, without copying YAML. Add this chart as a dependency of your
chart (alias-free: its values live under `eipool:`), then in your Deployment or DaemonSet:

  {{- $eipool := dict "Values" .Values.eipool "Release" .Release }}
  template:
    metadata:
      labels:
        {{- include "eipool.podLabels" $eipool | nindent 8 }}
      annotations:
        {{- include "eipool.podAnnotations" $eipool | nindent 8 }}
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
        - name: my-media-server
          command: ["/bin/sh", "-c"]
          args:
            - {{ printf "%s exec my-media-server --public-ip \"$EIPOOL_PUBLIC_IP\"" (include "eipool.mediaStart" $eipool) | quote }}
          livenessProbe:
            {{- include "eipool.mediaLivenessProbe" $eipool | nindent 12 }}
          volumeMounts:
            {{- include "eipool.mediaVolumeMounts" $eipool | nindent 12 }}
          {{- include "eipool.mediaSecurityContext" $eipool | nindent 10 }}

Name every container of the pod but the agent in the value mediaContainers (here
["my-media-server"]; there is no default, and eipool.podAnnotations fails the render without it):
eipool.podAnnotations tells the pod identity webhook to give none of them the node role
(eks.amazonaws.com/skip-containers). Give every one of them eipool.mediaSecurityContext (no
capability: with hostNetwork, NET_RAW would read the agent's credentials off the node's network).

The example workload (mediaExample.enabled) is built from exactly these templates.

Why one media pod per node (eipool.mediaAntiAffinity): with hostNetwork, every media pod on a
node maps its address to the node's private IP, so two of them share one Elastic IP, and the
first to stop releases it from under the other. The grace period (eipool.terminationGracePeriod)
lets the agent give the address back after the media server drains; the zone spread
(eipool.mediaZoneSpread) keeps a zone's loss from taking most media servers with it.
scripts/check_wiring.py fails a render of your chart without any of them (docs/helm.md: run it
on `helm template` of your chart).
*/}}

{{/* The label that marks a pod running the agent: one such pod per node (mediaAntiAffinity). */}}
{{- define "eipool.agentLabel" -}}
eipool/agent: "true"
{{- end -}}

{{/* Labels for the pod template: the PodMonitor (or a plain Prometheus's scrape config) scrapes
the agent by them. */}}
{{- define "eipool.podLabels" -}}
{{ include "eipool.scrapeLabel" . }}
{{ include "eipool.agentLabel" . }}
{{- end -}}

{{/* Annotations for the pod template. Only the agent gets the node role: the pod identity webhook
(IRSA and EKS Pod Identity alike) injects the role's credentials (AWS_ROLE_ARN and the token
file, or the container-credentials URI and token) into every container not named in
eks.amazonaws.com/skip-containers, a comma-separated list of container and initContainer names.
A compromised media server would otherwise hold a role that can disassociate any pool address.
mediaContainers must name every container of the pod but eipool-agent: it has no default (a
default name would silently leave your own containers the role), so the render fails without it. */}}
{{- define "eipool.podAnnotations" -}}
{{- if not .Values.mediaContainers }}
{{- fail "eipool: mediaContainers is empty: name every container and initContainer of your media pod but eipool-agent (e.g. eipool.mediaContainers: [janus]), so that only the agent gets the node role (eks.amazonaws.com/skip-containers)" }}
{{- end }}
{{- include "eipool.skipContainers" .Values.mediaContainers }}
{{- end -}}

{{/* The annotation for a list of container names (eipool.podAnnotations gives mediaContainers;
mediaExample its own container). */}}
{{- define "eipool.skipContainers" -}}
eks.amazonaws.com/skip-containers: {{ join "," . | quote }}
{{- end -}}

{{/* The pod's termination grace period: the media server's drain plus the agent's release
(agent.terminationGracePeriodSeconds; the default 30 s of Kubernetes is too short). */}}
{{- define "eipool.terminationGracePeriod" -}}
terminationGracePeriodSeconds: {{ int .Values.agent.terminationGracePeriodSeconds }}
{{- end -}}

{{/* Under `affinity:`: at most one pod running the agent per node, of any release, pool or
namespace (two would share the node's address; the first to stop releases it under the other).
The empty namespaceSelector makes the term cover every namespace (without it, only the pod's
own). Add your own nodeAffinity beside it. */}}
{{- define "eipool.mediaAntiAffinity" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector:
        matchLabels:
          {{- include "eipool.agentLabel" . | nindent 10 }}
      namespaceSelector: {}
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

{{/* Pod-level fields: the IRSA ServiceAccount, no Kubernetes API token (nothing in the pod calls
the API; the pod identity webhook mounts its own token for the agent), the node's network (the
Elastic IP is the node's). */}}
{{- define "eipool.podSpec" -}}
serviceAccountName: {{ include "eipool.serviceAccountName" . }}
automountServiceAccountToken: false
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
  # --listen defaults to the node's private IP (with agent.ipFamily IPv6: the pod's IPv6 address,
  # where the kubelet probes): keep this port closed to the internet.
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
    {{- if eq .Values.agent.ipFamily "IPv6" }}
    - --listen
    - {{ printf "[$(EIPOOL_POD_IP)]:%d" $port | quote }}
    {{- else if ne $port 9877 }}
    - --listen
    - {{ printf "$(EIPOOL_POD_IP):%d" $port | quote }}
    {{- end }}
    {{- if .Values.agent.releaseOnExit }}
    - --release-on-exit
    - --release-timeout
    - {{ .Values.agent.releaseTimeout }}
    {{- end }}
  {{- $podIP := "" }}
  {{- if or (eq .Values.agent.ipFamily "IPv6") (ne $port 9877) }}
  {{- /* The address the kubelet probes and Prometheus scrapes, the pod's IP: on IPv4 the node's
  private IPv4 (the agent's default, which --listen cannot keep with another port: ":PORT" would
  be every interface of the node), on an IPv6 cluster the node's IPv6 address. */}}
  {{- $podIP = "- name: EIPOOL_POD_IP\n  valueFrom:\n    fieldRef:\n      fieldPath: status.podIP" }}
  {{- end }}
  {{- include "eipool.envWith" (dict "ctx" . "extra" $podIP) | nindent 2 }}
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

{{/* The media container's mounts: the env file (read-only) and where it writes down its address.
Two folders: the API refuses two volumes mounted at one path. */}}
{{- define "eipool.mediaVolumeMounts" -}}
{{- if eq (dir .Values.agent.envFile) (dir .Values.agent.announcedFile) }}
{{- fail (printf "eipool: agent.announcedFile %s is in the folder of agent.envFile %s: put it in another folder (default /run/media/announced-ip); the two are separate volumes" .Values.agent.announcedFile .Values.agent.envFile) }}
{{- end }}
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

{{/* The media container's securityContext (every container of the media pod but the agent): no
capability at all, no privilege escalation, not root. With hostNetwork a container shares the
node's network stack: NET_RAW (in Kubernetes' default set) would let it read the node's traffic,
among it the agent's credentials, which EKS Pod Identity's agent hands out over plain HTTP on
169.254.170.23; NET_ADMIN would let it redirect that traffic. runAsNonRoot needs an image whose
USER is numeric and not 0, or mediaSecurityContext.runAsUser. */}}
{{- define "eipool.mediaSecurityContext" -}}
securityContext:
  {{- if .Values.mediaSecurityContext.runAsNonRoot }}
  runAsNonRoot: true
  {{- end }}
  {{- with .Values.mediaSecurityContext.runAsUser }}
  runAsUser: {{ int . }}
  {{- end }}
  allowPrivilegeEscalation: false
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/* The media container's livenessProbe: fails when the env file names another address than the
one it started on, so the kubelet restarts it on the new one. Sized so that one slow check never
restarts a server with calls on it: the check forks a shell and cat in the media container, which
on a loaded node (a media server at its CPU limit is throttled) can take over a second, the
default timeout; a timeout counts as a failure. 5 s to answer, and two failures in a row: a real
drift restarts the server 5-10 s after the env file changes (plus a check in flight, at most
5 s), a single slow or failed check never does. */}}
{{- define "eipool.mediaLivenessProbe" -}}
exec:
  command:
    - /bin/sh
    - -c
    - {{ printf ". %s && [ \"$EIPOOL_PUBLIC_IP\" = \"$(cat %s)\" ]" .Values.agent.envFile .Values.agent.announcedFile | quote }}
periodSeconds: 5
timeoutSeconds: 5
failureThreshold: 2
{{- end -}}
