"""The wiring of eipool's media-server pattern, checked on a rendered manifest: the kustomize
overlays and the Helm chart (its example workload, and a media chart of your own built from its
named templates) go through the same checks, so they cannot drift apart. Each WHY is one
assertion.

    check_wiring.py --operator RENDER.yaml...     check each render of a cluster with the Prometheus
                                                  Operator: its PodMonitor and alert rules are there
    check_wiring.py --no-operator RENDER.yaml...  check each render of a cluster without it: none of
                                                  the Operator's kinds (the install would fail)
    check_wiring.py --no-operator --ipv6 RENDER.yaml...
                                                  renders for an IPv6 cluster: the agent and the exporter
                                                  listen where the kubelet probes (the pod's IPv6 address)
    check_wiring.py --self-test --operator|--no-operator RENDER.yaml...
                                                  break each render in known ways and show that
                                                  every break is caught (the checks can fail)
    check_wiring.py --same-rules A.yaml B.yaml... the renders (or plain rules files) carry the same
                                                  alert rules
    check_wiring.py --verify-jq FILE.jq RENDER.yaml...
                                                  the media pods of each render admitted as the pod
                                                  identity webhook admits them (IRSA and EKS Pod Identity):
                                                  the docs' check FILE.jq prints nothing; admitted without
                                                  the skip-containers annotation, or without a role, it
                                                  names each container that is wrong

On your own chart: `helm template RELEASE CHART -n NAMESPACE > render.yaml`, then
`python3 scripts/check_wiring.py --no-operator render.yaml` (with the Prometheus Operator's kinds:
add `--api-versions monitoring.coreos.com/v1/PodMonitor --api-versions
monitoring.coreos.com/v1/PrometheusRule` to helm and use --operator; IPv6 cluster: add --ipv6).
It needs Python 3 and PyYAML, and this repository's docs/runbook.md, dashboard and scrape config.
"""
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = ROOT / "docs" / "runbook.md"
DASHBOARD = ROOT / "charts" / "eipool" / "dashboards" / "eipool.json"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")
# An agent may wait in a full pool's line this long without its startupProbe restarting it.
DAY = 24 * 3600
OPERATOR_GROUP = "monitoring.coreos.com/"
SKIP_CONTAINERS = "eks.amazonaws.com/skip-containers"
# The annotation's value as the pod identity webhook reads it: Go's encoding/csv, one record. A
# quote or a space is read differently there (an error that skips nothing, a name with the space
# kept) than by a lenient reader, so only plain names, comma-separated, are accepted.
SKIP_LIST = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(,[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# What gives a container AWS credentials: the webhook's IRSA variables (role and web identity
# token) and Pod Identity's (the container-credentials URI and its token), or keys.
AWS_CREDENTIAL_ENV = re.compile(r"^AWS_(ROLE_ARN|WEB_IDENTITY_TOKEN_FILE|CONTAINER_[A-Z_]+|ACCESS_KEY_ID|SECRET_ACCESS_KEY|"
                                r"SESSION_TOKEN)$")
# Where Kubernetes and the webhook mount service account tokens (the API's, IRSA's, Pod Identity's).
TOKEN_DIRS = ("/var/run/secrets/kubernetes.io", "/var/run/secrets/eks.amazonaws.com", "/var/run/secrets/pods.eks.amazonaws.com",
              "/run/secrets/kubernetes.io", "/run/secrets/eks.amazonaws.com", "/run/secrets/pods.eks.amazonaws.com")
# Capabilities a media container must never get back: NET_RAW reads the node's traffic (with
# hostNetwork, the agent's plain-HTTP credential exchange with EKS Pod Identity's agent on
# 169.254.170.23), NET_ADMIN redirects it, SYS_ADMIN and SYS_PTRACE reach other processes.
FORBIDDEN_CAPS = {"ALL", "NET_RAW", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"}
AGENT_LABEL = {"eipool/agent": "true"}


def flag(args, name):
    return args[args.index(name) + 1] if name in args else None


def mount_dir(container, volume):
    return next((m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] == volume), None)


def seconds(d):
    """A Go/humantime duration like 180s, 3m, 1h30m in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", d))


def selects(selector, labels):
    """Whether a LabelSelector (matchLabels, matchExpressions In/Exists) selects these labels."""
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
    return True


def meta_label(name):
    """A Kubernetes label name as Prometheus's service discovery writes it in a meta label."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def scraped_ports(template, namespace="media", pod="pod-0"):
    """The container ports of a pod template that deploy/prometheus/prometheus.yml's eipool job
    keeps, its relabel_configs applied to the meta labels Prometheus's pod discovery gives each
    port (Debian's Prometheus lacks Kubernetes discovery, so this applies them as Prometheus does:
    keep, drop and replace, the regex anchored)."""
    job = next(j for j in yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"] if j["job_name"] == "eipool")
    spec, labels = template["spec"], template["metadata"].get("labels", {})
    kept = []
    for init, containers in ((True, spec.get("initContainers", [])), (False, spec.get("containers", []))):
        for c in containers:
            for port in c.get("ports", []):
                meta = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": pod,
                        "__meta_kubernetes_pod_container_name": c["name"],
                        "__meta_kubernetes_pod_container_init": str(init).lower(),
                        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"])}
                for k, v in labels.items():
                    meta[f"__meta_kubernetes_pod_label_{meta_label(k)}"] = str(v)
                    meta[f"__meta_kubernetes_pod_labelpresent_{meta_label(k)}"] = "true"
                keep = True
                for rule in job.get("relabel_configs", []):
                    value = rule.get("separator", ";").join(meta.get(l, "") for l in rule.get("source_labels", []))
                    match = re.fullmatch(rule.get("regex", "(.*)"), value)
                    action = rule.get("action", "replace")
                    if action == "keep" and not match or action == "drop" and match:
                        keep = False
                        break
                    if action == "replace" and match:
                        meta[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$1", r"\1"))
                if keep:
                    kept.append((c["name"], port["containerPort"]))
    return kept


def skipped_containers(template):
    """The container names the pod identity webhook skips (None without the annotation): plain
    names, comma-separated. Anything else (a quote, a space) is read otherwise by the webhook's
    CSV reader, and counts as skipping none."""
    value = (template["metadata"].get("annotations") or {}).get(SKIP_CONTAINERS)
    if value is None:
        return None
    return value.split(",") if SKIP_LIST.fullmatch(str(value)) else []


def env_of(docs, container):
    """A container's environment as Kubernetes gives it: envFrom's ConfigMaps (of the render; with
    their prefix), then env, which wins. Values from elsewhere (a Secret, the downward API) are
    given as their env entry."""
    out = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        cm = ref and next((d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ref.get("name")), None)
        for k, v in ((cm or {}).get("data") or {}).items():
            out[source.get("prefix", "") + k] = {"name": source.get("prefix", "") + k, "value": v}
    for e in container.get("env", []):
        out[e["name"]] = e
    return out


def listen_of(docs, container):
    """What a container of eipool listens on: --listen, else EIPOOL_LISTEN of its environment
    (clap reads the flag first), else None (the command's default)."""
    args = container.get("args", [])
    listen = flag(args, "--listen")
    if listen is None:
        listen = env_of(docs, container).get("EIPOOL_LISTEN", {}).get("value")
    return listen


def least_privilege_failures(docs, template, check):
    """Inside a pod: no Kubernetes API token; no container but the agent with AWS credentials, a
    service account token, a capability to read or redirect the node's network, or the host's
    processes."""
    spec = template["spec"]
    check(spec.get("automountServiceAccountToken") is False,
          "no Kubernetes API token in the pod (automountServiceAccountToken: false): nothing in it calls the API")
    for field in ("hostPID", "hostIPC", "shareProcessNamespace"):
        check(spec.get(field) is not True, f"the pod does not set {field}: its containers would see the agent's process "
                                           "(its environment, its credentials)")
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret" and d.get("type") == "kubernetes.io/service-account-token"}
    tokens = {v["name"] for v in spec.get("volumes", [])
              if any("serviceAccountToken" in s for s in v.get("projected", {}).get("sources", []))
              or v.get("secret", {}).get("secretName") in secrets}
    check(not tokens, f"no service account token among the pod's volumes (the API's is off; the webhook mounts the agent's own "
                      f"at admission): found {sorted(tokens)}")
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        paths = [m["mountPath"].rstrip("/") for m in c.get("volumeMounts", [])]
        check(len(paths) == len(set(paths)), f"container {c['name']} mounts one volume per path (the API refuses two at one: "
                                             f"{sorted(p for p in paths if paths.count(p) > 1)})")
        check(not any(p == d or p.startswith(d + "/") for p in paths for d in TOKEN_DIRS),
              f"container {c['name']} mounts nothing where service account tokens go (/var/run/secrets/...)")
        if c["name"] == "eipool-agent":
            continue
        creds = sorted(n for n in env_of(docs, c) if AWS_CREDENTIAL_ENV.match(n))
        check(not creds, f"only the agent gets the node role: container {c['name']} has no AWS credential variables (has {creds})")
        sc = c.get("securityContext") or {}
        caps = sc.get("capabilities") or {}
        dropped = set(caps.get("drop") or [])
        check(bool(dropped & {"ALL", "NET_RAW"}) and not set(caps.get("add") or []) & FORBIDDEN_CAPS and sc.get("privileged") is not True,
              f"container {c['name']} drops NET_RAW (capabilities.drop ALL, as eipool.mediaSecurityContext does), adds none of "
              f"{sorted(FORBIDDEN_CAPS)} back and is not privileged: with hostNetwork, NET_RAW reads the node's traffic, the "
              "agent's credentials from EKS Pod Identity's agent (plain HTTP) included")


def anchors():
    """The anchors of docs/runbook.md's headings, as GitHub makes them."""
    out = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^a-z0-9 -]", "", title).replace(" ", "-"))
    return out


def pod_ip_listen(docs, container, listen):
    """"IPv4" or "IPv6" when `listen` is the pod's IP from the downward API ($(VAR):PORT, or
    [$(VAR)]:PORT on IPv6), else None."""
    var = re.fullmatch(r"(\[)?\$\((\w+)\)(\])?:\d+", listen or "")
    if not var or bool(var[1]) != bool(var[3]):
        return None
    field = env_of(docs, container).get(var[2], {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    return ("IPv6" if var[1] else "IPv4") if field == "status.podIP" else None


def media_failures(docs, w, ipv6=False):
    """The checks of one workload that runs the eipool agent; `ipv6`: rendered for an IPv6 cluster."""
    failures = []

    def check(ok, why):
        if not ok:
            failures.append(f"{w['kind']}/{w['metadata']['name']}: {why}")

    template = w["spec"]["template"]
    spec = template["spec"]
    labels = template["metadata"].get("labels", {})
    inits = spec.get("initContainers", [])
    agent = next(c for c in inits if c["name"] == "eipool-agent")
    app = next((c for c in spec["containers"] if c["name"] != "eipool-agent"), None)
    check(app is not None, "a media container runs beside the agent")
    if app is None:
        return failures
    args = agent.get("args", [])

    check(spec.get("hostNetwork") is True, "hostNetwork is on (the Elastic IP is the node's)")
    check(args[:1] == ["agent"] and agent.get("restartPolicy") == "Always",
          "the agent is a native sidecar (initContainer, restartPolicy Always) running `eipool agent`")
    check(inits[0] is agent, "the agent is the first initContainer: it claims, with /metrics up from the start")
    output = flag(args, "--output")
    check(output is not None, "the agent writes the env file (--output)")
    volume = next((m["name"] for m in agent.get("volumeMounts", []) if output and output.startswith(m["mountPath"] + "/")), None)
    check(volume is not None, "the env file is on a mounted volume")
    check(any(v["name"] == volume and "emptyDir" in v for v in spec.get("volumes", [])), "that volume is a shared emptyDir")
    check(mount_dir(app, volume) == mount_dir(agent, volume), "the media container mounts the env file's volume at the same path")
    start = " ".join(app.get("args", []) + app.get("command", []))
    check(bool(output) and output in start, "the media container sources the env file")
    live = " ".join(app.get("livenessProbe", {}).get("exec", {}).get("command", []))
    check(bool(output) and output in live and "EIPOOL_PUBLIC_IP" in live,
          "the media container's livenessProbe compares the env file's address with the one it started on (restart on a new address)")
    remembered = [p for p in re.findall(r"/[\w./-]+", start) if p != output and p in live]
    check(bool(remembered), "the address the media container started with is written where its livenessProbe reads it")
    check(any(mount_dir(app, v["name"]) and remembered and remembered[0].startswith(mount_dir(app, v["name"]) + "/")
              for v in spec.get("volumes", []) if "emptyDir" in v),
          "that file is on a volume of the media container (it survives a restart of the container, not of the pod)")
    probe = app.get("livenessProbe", {})
    period, threshold, probe_timeout = (probe.get("periodSeconds", 10), probe.get("failureThreshold", 3),
                                        probe.get("timeoutSeconds", 1))
    check(threshold >= 2 and probe_timeout >= 3,
          "one slow or failed check of the media container's livenessProbe does not restart it (a restart drops its "
          f"calls): failureThreshold >= 2 and timeoutSeconds >= 3 (has {threshold} and {probe_timeout})")
    check(period * threshold + probe_timeout <= 30,
          f"a drift still restarts the media container within 30 s (periodSeconds x failureThreshold + timeoutSeconds "
          f"is {period * threshold + probe_timeout})")
    listen = listen_of(docs, agent)
    listen_port = int(listen.rsplit(":", 1)[1]) if listen else 9877  # the agent's default port
    check(listen is None or not listen.startswith(("0.0.0.0:", "[::]:", ":")),
          "the agent does not listen on a wildcard address of the host-network node (default: its private IP; "
          f"--listen or EIPOOL_LISTEN, its ConfigMap's too: {listen!r})")
    # The kubelet probes (and Prometheus scrapes) the pod's IP: on IPv4 the node's private IPv4,
    # the agent's default; on IPv6 the node's IPv6, which the agent must be told from the
    # downward API. Any other address fails every probe.
    from_pod_ip = pod_ip_listen(docs, agent, listen)
    check(listen is None and not ipv6 or from_pod_ip and (from_pod_ip == "IPv6") == ipv6,
          "the agent listens where the kubelet probes: its default (the node's private IPv4, the pod's IP on IPv4) or "
          "the pod's IP from the downward API (status.podIP; [$(VAR)]:PORT on IPv6, which an IPv6 cluster needs)")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        check("host" not in agent.get(probe_name, {}).get("httpGet", {}),
              f"the agent's {probe_name} goes to the pod's IP (no httpGet.host)")
    check(any(p["containerPort"] == listen_port for p in agent.get("ports", [])), "the agent exposes its --listen port")
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/readyz")]:
        get = agent.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path and get.get("port") == listen_port, f"the agent's {probe} hits {path} on its own port")
    check("--release-on-exit" in args, "the agent gives the address back when the pod stops (--release-on-exit)")
    pre = agent.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    check(pre[:2] == ["eipool", "release"], "preStop runs `eipool release`")
    check(flag(pre, "--env-file") == output, "the release names the claimed association (--env-file)")
    startup = agent.get("startupProbe", {})
    timeout = seconds(flag(args, "--timeout") or "180s")
    check(startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) > timeout,
          f"the startupProbe waits longer than one claim's --timeout ({timeout:.0f} s)")
    check(startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= DAY,
          "the startupProbe does not restart an agent waiting in a full pool's line (it covers a day)")
    check(spec.get("terminationGracePeriodSeconds", 30) >= 60, "the grace period covers drain plus release")
    anti = spec.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
    per_node = [t for t in anti if t.get("topologyKey") == "kubernetes.io/hostname" and t.get("labelSelector")
                and selects(t["labelSelector"], labels)]
    check(bool(per_node),
          "one media pod per node: a required podAntiAffinity on kubernetes.io/hostname selects the media pods "
          "(two on one node share its address, and the first to stop releases it under the other)")
    check(all(labels.get(k) == v for k, v in AGENT_LABEL.items()),
          'the media pods carry the label eipool/agent: "true" that every pod running the agent carries')
    check(any(selects(t["labelSelector"], AGENT_LABEL) and t.get("namespaceSelector") == {} for t in per_node),
          'one pod running the agent per node of any workload or namespace: the anti-affinity selects eipool/agent: "true" '
          "with an empty namespaceSelector (without it, only the pod's own namespace)")
    spread = spec.get("topologySpreadConstraints", [])
    check(any(c.get("topologyKey") == "topology.kubernetes.io/zone" and c.get("labelSelector") and selects(c["labelSelector"], labels)
              for c in spread),
          "the media pods spread over the zones (topologySpreadConstraints on topology.kubernetes.io/zone)")
    env = {e["name"]: e for e in agent.get("env", [])}
    check("secretKeyRef" in env.get("EIPOOL_REDIS_URL", {}).get("valueFrom", {}),
          "the agent reads the Redis URL from a Secret")
    sa_name = spec.get("serviceAccountName")
    sa = next((d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == sa_name), None)
    check(sa is not None, f"the pods' ServiceAccount {sa_name!r} is in the render")
    check(sa is not None and "eks.amazonaws.com/role-arn" in (sa["metadata"].get("annotations") or {}),
          "the ServiceAccount is annotated for IRSA")
    least_privilege_failures(docs, template, check)
    check(any(d["kind"] == "PodDisruptionBudget" and selects(d["spec"]["selector"], labels) for d in docs),
          "a PodDisruptionBudget covers the media pods")
    # Least privilege inside the pod: the node role reaches the agent only.
    names = [c["name"] for c in inits + spec["containers"]]
    skipped = skipped_containers(template)
    check(skipped is not None and sorted(skipped) == sorted(n for n in names if n != "eipool-agent"),
          f"only the agent gets the node role: the pod annotation {SKIP_CONTAINERS} names every container but "
          f"eipool-agent, comma-separated, nothing else ({sorted(n for n in names if n != 'eipool-agent')}; has "
          f"{(template['metadata'].get('annotations') or {}).get(SKIP_CONTAINERS)!r})")
    check(scraped_ports(template) == [("eipool-agent", listen_port)],
          "deploy/prometheus/prometheus.yml's scrape config keeps the agent's metrics port of the media pods, and only it "
          f"(keeps {scraped_ports(template)})")
    return failures


def failures_of(docs, operator, ipv6=False):
    """Every failure of a render; `operator`: rendered for a cluster with the Prometheus Operator
    (its PodMonitor and alert rules must be there), else for one without (none of its kinds);
    `ipv6`: for an IPv6 cluster."""
    failures = []

    def check(ok, why):
        if not ok:
            failures.append(why)

    media = [d for d in docs if d["kind"] in WORKLOADS
             and any(c["name"] == "eipool-agent" for c in d["spec"]["template"]["spec"].get("initContainers", []))]
    check(bool(media), "a media workload runs the eipool agent")
    for w in media:
        failures.extend(media_failures(docs, w, ipv6))
    exporters = [d for d in docs if d["kind"] == "Deployment"
                 and any(c.get("args", [])[:1] == ["exporter"] for c in d["spec"]["template"]["spec"]["containers"])]
    check(len(exporters) == 1 and exporters[0]["spec"].get("replicas", 1) == 1, "one exporter serves the pool gauges")
    for e in exporters:
        template = e["spec"]["template"]
        check(len(scraped_ports(template)) == 1, "deploy/prometheus/prometheus.yml's scrape config keeps the exporter's metrics port")
        # The kubelet probes the pod's IP: on an IPv6 cluster an IPv6 address, which 0.0.0.0 (and
        # :PORT, the same) does not listen on: the exporter would restart forever.
        exporter = next(c for c in template["spec"]["containers"] if c.get("args", [])[:1] == ["exporter"])
        listen = listen_of(docs, exporter) or ":9877"
        check(not ipv6 or listen.startswith("[::]:") or pod_ip_listen(docs, exporter, listen) == "IPv6",
              f"on an IPv6 cluster the exporter listens on [::] (both families) or the pod's IPv6 address, where the kubelet "
              f"probes (listens on {listen!r})")
    # Least privilege in every pod of the render (the exporter's, a trial Redis's): no Kubernetes
    # API token, no credentials or raw network for any container but the agent.
    for d in docs:
        if d["kind"] in WORKLOADS and d not in media:
            least_privilege_failures(docs, d["spec"]["template"],
                                     lambda ok, why, d=d: check(ok, f"{d['kind']}/{d['metadata']['name']}: {why}"))
    # Every namespaced object in one namespace: an object without one lands in kubectl's current
    # namespace, away from the rest (the dashboard may be put beside Grafana on purpose).
    spaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"
              and "grafana_dashboard" not in (d["metadata"].get("labels") or {})}
    check(len(spaces) == 1, f"every object is in the same namespace (found {sorted(map(str, spaces))})")
    # The Grafana dashboard, as committed.
    boards = [d for d in docs if d["kind"] == "ConfigMap" and "grafana_dashboard" in (d["metadata"].get("labels") or {})]
    check(len(boards) == 1 and json.loads(next(iter(boards[0]["data"].values()))) == json.loads(DASHBOARD.read_text()),
          "a ConfigMap labelled for Grafana's sidecar (grafana_dashboard) carries charts/eipool/dashboards/eipool.json")
    operator_kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs if d["apiVersion"].startswith(OPERATOR_GROUP))
    if not operator:
        check(not operator_kinds, "rendered for a cluster without the Prometheus Operator: none of its kinds (monitoring.coreos.com), "
                                  f"whose install would fail there (found {operator_kinds})")
        return failures
    monitors = [d for d in docs if d["kind"] == "PodMonitor"]
    for w in media:
        check(any(selects(m["spec"]["selector"], w["spec"]["template"]["metadata"].get("labels", {})) for m in monitors),
              "a PodMonitor scrapes the agents")
    for e in exporters:
        labels = e["spec"]["template"]["metadata"].get("labels", {})
        check(any(selects(m["spec"]["selector"], labels) for m in monitors), "a PodMonitor scrapes the exporter")
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    check(len(rules) == 1, "the alerts are deployed")
    # kube-prometheus-stack's Prometheus selects only PodMonitors and PrometheusRules labelled
    # release: <its release>; without it nothing is scraped and nothing alerts, silently.
    releases = {(d["metadata"].get("labels") or {}).get("release") for d in monitors + rules}
    check(len(releases) == 1 and None not in releases,
          "the PodMonitor and the PrometheusRule carry the same label release (kube-prometheus-stack's Prometheus selects "
          f"only those labelled release: <its release name>; found {sorted(map(str, releases))})")
    known = anchors()
    for r in rules:
        for g in r["spec"]["groups"]:
            for rule in g["rules"]:
                url = rule.get("annotations", {}).get("runbook_url", "")
                base, _, anchor = url.partition("#")
                check(url.startswith(("https://", "http://")) and "github.com/eipool/" not in url,
                      f"{rule['alert']}'s runbook_url {url!r} is under the configured runbook base URL")
                check(anchor in known, f"{rule['alert']}'s runbook_url anchor #{anchor} is a heading of docs/runbook.md")
    return failures


def load(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]


# Known ways to break the wiring, each with (part of) the check that must catch it.
def _media(docs):
    return next(d for d in docs if d["kind"] in WORKLOADS
                and any(c["name"] == "eipool-agent" for c in d["spec"]["template"]["spec"].get("initContainers", [])))


def _agent(docs):
    return next(c for c in _media(docs)["spec"]["template"]["spec"]["initContainers"] if c["name"] == "eipool-agent")


def _app(docs):
    return next(c for c in _media(docs)["spec"]["template"]["spec"]["containers"] if c["name"] != "eipool-agent")


def _template(docs):
    return _media(docs)["spec"]["template"]


def _anti(docs):
    return _template(docs)["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]


def _exporter(docs):
    return next(c for d in docs if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]
                if c.get("args", [])[:1] == ["exporter"])


def _project_sts_token(docs):
    """What a user might add by hand: IRSA's token and variables in the media container."""
    spec, app = _template(docs)["spec"], _app(docs)
    spec["volumes"].append({"name": "sts", "projected": {"sources": [{"serviceAccountToken": {
        "audience": "sts.amazonaws.com", "path": "token", "expirationSeconds": 86400}}]}})
    app.setdefault("volumeMounts", []).append({"name": "sts", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"})
    app.setdefault("env", []).extend([{"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111111111111:role/eipool-media-prod-node"},
                                      {"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
                                       "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}])


def _set_listen(docs, value):
    """The agent told to listen on `value` (its --listen replaced, or added)."""
    args = _agent(docs)["args"]
    if "--listen" in args:
        args[args.index("--listen") + 1] = value
    else:
        args.extend(["--listen", value])


def _agent_config_map(docs):
    name = next(s["configMapRef"]["name"] for s in _agent(docs)["envFrom"] if "configMapRef" in s)
    return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)


# Known ways to break the wiring, each with (part of) the check that must catch it, and the
# renders it applies to: with the Operator's objects (True), without (False), for an IPv6
# cluster ("ipv6"), those a function of the render accepts, or every render (None).
BREAKS = [
    ("no preStop release", lambda d: _agent(d).pop("lifecycle"), "preStop runs", None),
    ("two media pods allowed on one node",
     lambda d: _media(d)["spec"]["template"]["spec"].pop("affinity"), "one media pod per node", None),
    ("one agent per node of this namespace only (no namespaceSelector)",
     lambda d: [t.pop("namespaceSelector", None) for t in _anti(d)], "any workload or namespace", None),
    ("one agent per node of this workload only (its own labels)",
     lambda d: [t.update(labelSelector={"matchLabels": {"x": "y"}}) for t in _anti(d)]
     and _template(d)["metadata"]["labels"].update(x="y"), "any workload or namespace", None),
    ("no zone spread", lambda d: _media(d)["spec"]["template"]["spec"].pop("topologySpreadConstraints"), "spread over the zones", None),
    ("Kubernetes' default grace period",
     lambda d: _media(d)["spec"]["template"]["spec"].pop("terminationGracePeriodSeconds"), "grace period", None),
    ("the media container mounts the env file elsewhere",
     lambda d: [m.update(mountPath="/elsewhere") for m in _app(d)["volumeMounts"] if m["mountPath"] in _agent(d)["args"][2]],
     "same path", None),
    ("no hostNetwork", lambda d: _media(d)["spec"]["template"]["spec"].pop("hostNetwork"), "hostNetwork", None),
    ("the agent is not the first initContainer",
     lambda d: _media(d)["spec"]["template"]["spec"]["initContainers"].insert(0, {"name": "setup", "image": "busybox"}),
     "first initContainer", None),
    ("a startupProbe shorter than a claim", lambda d: _agent(d)["startupProbe"].update(failureThreshold=10), "startupProbe waits", None),
    ("a startupProbe that restarts a waiting agent", lambda d: _agent(d)["startupProbe"].update(failureThreshold=300), "waiting in a full pool's line", None),
    ("no liveness restart of the media container", lambda d: _app(d).pop("livenessProbe"), "livenessProbe compares", None),
    ("a drift probe that restarts the media server on one failed check",
     lambda d: _app(d)["livenessProbe"].update(failureThreshold=1), "one slow or failed check", None),
    ("a drift probe with the default 1 s timeout", lambda d: _app(d)["livenessProbe"].pop("timeoutSeconds"), "one slow or failed check", None),
    ("a drift probe too slow to restart on a drift",
     lambda d: _app(d)["livenessProbe"].update(periodSeconds=60), "within 30 s", None),
    ("no --release-on-exit", lambda d: _agent(d)["args"].remove("--release-on-exit"), "--release-on-exit", None),
    ("the agent on every interface", lambda d: _set_listen(d, "0.0.0.0:9877"), "wildcard", None),
    ("the agent on every interface (:PORT)", lambda d: _set_listen(d, ":9877"), "wildcard", None),
    ("the agent on an address the kubelet does not probe",
     lambda d: _set_listen(d, "[$(NOT_THE_POD_IP)]:9877"), "where the kubelet probes", None),
    ("no IRSA annotation",
     lambda d: [s["metadata"].pop("annotations", None) for s in d if s["kind"] == "ServiceAccount"], "IRSA", None),
    ("the media container given the node role (no skip-containers)",
     lambda d: _template(d)["metadata"].pop("annotations"), "only the agent gets the node role", None),
    ("skip-containers naming a container that is not there",
     lambda d: _template(d)["metadata"]["annotations"].update({SKIP_CONTAINERS: "media-server"}), "only the agent gets", None),
    ("skip-containers naming the agent too",
     lambda d: _template(d)["metadata"]["annotations"].update(
         {SKIP_CONTAINERS: _template(d)["metadata"]["annotations"][SKIP_CONTAINERS] + ",eipool-agent"}), "only the agent gets", None),
    ("skip-containers with a space the webhook keeps in the name",
     lambda d: _template(d)["metadata"]["annotations"].update(
         {SKIP_CONTAINERS: " " + _template(d)["metadata"]["annotations"][SKIP_CONTAINERS]}), "only the agent gets", None),
    ("skip-containers with a quote the webhook's CSV reader refuses (it then skips nothing)",
     lambda d: _template(d)["metadata"]["annotations"].update(
         {SKIP_CONTAINERS: _template(d)["metadata"]["annotations"][SKIP_CONTAINERS] + ',"janus'}), "only the agent gets", None),
    ("a Kubernetes API token in the media pod",
     lambda d: _template(d)["spec"].update(automountServiceAccountToken=True), "API token", None),
    ("a Kubernetes API token in the exporter's pod",
     lambda d: next(w for w in d if w["kind"] == "Deployment" and w is not _media(d))["spec"]["template"]["spec"].update(
         automountServiceAccountToken=True), "API token", None),
    ("IRSA's token and variables put into the media container by hand", _project_sts_token, "no AWS credential variables", None),
    ("a projected token volume in the media pod", _project_sts_token, "no service account token among", None),
    ("EKS Pod Identity's credentials URI in the media container",
     lambda d: _app(d).setdefault("env", []).append({"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                                    "value": "http://169.254.170.23/v1/credentials"}),
     "no AWS credential variables", None),
    ("the API token mounted by hand despite automountServiceAccountToken: false",
     lambda d: _template(d)["spec"]["volumes"].append({"name": "kube-api", "projected": {"sources": [
         {"serviceAccountToken": {"path": "token"}}]}})
     or _app(d).setdefault("volumeMounts", []).append({"name": "kube-api", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}),
     "mounts nothing where service account tokens go", None),
    ("two volumes mounted at one path", lambda d: _app(d)["volumeMounts"].append(dict(_app(d)["volumeMounts"][0], name="other")),
     "one volume per path", None),
    ("a media container that keeps NET_RAW (Kubernetes' default capabilities)", lambda d: _app(d).pop("securityContext"),
     "drops NET_RAW", None),
    ("a media container given NET_RAW back",
     lambda d: _app(d)["securityContext"]["capabilities"].update(add=["NET_RAW"]), "drops NET_RAW", None),
    ("a privileged media container", lambda d: _app(d)["securityContext"].update(privileged=True), "drops NET_RAW", None),
    ("the host's processes in the media pod", lambda d: _template(d)["spec"].update(hostPID=True), "hostPID", None),
    ("one process namespace for the pod's containers",
     lambda d: _template(d)["spec"].update(shareProcessNamespace=True), "shareProcessNamespace", None),
    ("the agent on every interface through the ConfigMap (extraEnv.EIPOOL_LISTEN=:9877)",
     lambda d: _agent_config_map(d)["data"].update(EIPOOL_LISTEN=":9877"), "wildcard",
     lambda d: "--listen" not in _agent(d)["args"]),
    ("media pods a plain Prometheus does not scrape",
     lambda d: _template(d)["metadata"]["labels"].pop("eipool/metrics"), "scrape config keeps the agent", None),
    ("an object outside the others' namespace",
     lambda d: _media(d)["metadata"].update(namespace="elsewhere"), "same namespace", None),
    ("no dashboard", lambda d: d.remove(next(c for c in d if "grafana_dashboard" in (c["metadata"].get("labels") or {}))),
     "grafana_dashboard", None),
    ("a dashboard that is not the committed one",
     lambda d: [c["data"].update({k: "{}" for k in c["data"]}) for c in d
                if "grafana_dashboard" in (c["metadata"].get("labels") or {})], "grafana_dashboard", None),
    ("a PodMonitor on a cluster without the Operator",
     lambda d: d.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "x"},
                         "spec": {"selector": {}}}), "without the Prometheus Operator", False),
    ("the PodMonitor selects other pods",
     lambda d: [m["spec"].update(selector={"matchLabels": {"app": "other"}}) for m in d if m["kind"] == "PodMonitor"],
     "PodMonitor scrapes the agents", True),
    ("a PodMonitor kube-prometheus-stack does not select (no release label)",
     lambda d: [m["metadata"].get("labels", {}).pop("release", None) for m in d if m["kind"] == "PodMonitor"],
     "carry the same label release", True),
    ("the exporter on IPv4 only on an IPv6 cluster",
     lambda d: _exporter(d)["args"].__setitem__(_exporter(d)["args"].index("--listen") + 1, "0.0.0.0:9877"),
     "the exporter listens on [::]", "ipv6"),
    ("the agent on the node's private IPv4 (its default) on an IPv6 cluster",
     lambda d: _agent(d).update(args=[a for a in _agent(d)["args"] if a != "--listen" and "$(EIPOOL_POD_IP)" not in a]),
     "where the kubelet probes", "ipv6"),
    ("a runbook link to a home eipool does not have",
     lambda d: [r.setdefault("annotations", {}).update(runbook_url="https://github.com/eipool/eipool/blob/main/docs/runbook.md#drift")
                for p in d if p["kind"] == "PrometheusRule" for g in p["spec"]["groups"] for r in g["rules"]],
     "runbook base URL", True),
    ("a runbook anchor that is not in docs/runbook.md",
     lambda d: [r["annotations"].update(runbook_url=r["annotations"]["runbook_url"].split("#")[0] + "#nowhere")
                for p in d if p["kind"] == "PrometheusRule" for g in p["spec"]["groups"] for r in g["rules"]],
     "is a heading", True),
]


def self_test(path, operator, ipv6=False):
    docs = load(path)
    assert not failures_of(docs, operator, ipv6), f"{path} must pass before it is broken: {failures_of(docs, operator, ipv6)}"
    missed = []
    for what, brk, caught_by, applies in BREAKS:
        if (applies == "ipv6" and not ipv6 or applies in (True, False) and applies != operator
                or callable(applies) and not applies(docs)):
            continue
        broken = copy.deepcopy(docs)
        brk(broken)
        if not any(caught_by in f for f in failures_of(broken, operator, ipv6)):
            missed.append(f"{what}: not caught (expected a failure mentioning {caught_by!r})")
    return missed


# What the pod identity webhook puts into each container it does not skip.
INJECTED = {
    "irsa": ({"AWS_ROLE_ARN": "arn:aws:iam::111111111111:role/eipool-media-prod-node", "AWS_STS_REGIONAL_ENDPOINTS": "regional",
              "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
             {"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": True}),
    "pod-identity": ({"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
                      "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE":
                          "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"},
                     {"name": "eks-pod-identity-token", "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
                      "readOnly": True}),
}


def admitted(template, mode, skip=True, role=True):
    """A pod of `template` as the API server stores it after the webhook (`mode`: irsa or
    pod-identity): credentials in every container it does not skip (`skip`: honouring the
    annotation); none at all without a role on the ServiceAccount."""
    pod = {"metadata": {"name": "media-server-0", **copy.deepcopy(template["metadata"])}, "spec": copy.deepcopy(template["spec"])}
    skipped = set(skipped_containers(template) or []) if skip else set()
    env, mount = INJECTED[mode]
    for c in pod["spec"].get("initContainers", []) + pod["spec"].get("containers", []):
        if role and c["name"] not in skipped:
            c.setdefault("env", []).extend({"name": k, "value": v} for k, v in env.items())
            c.setdefault("volumeMounts", []).append(dict(mount))
    return {"apiVersion": "v1", "kind": "List", "items": [pod]}


def verify_jq_failures(jq_file, docs):
    """The docs' check (a jq program over `kubectl get pods -o json`) on admitted media pods: silent
    when only the agent holds the role, and naming each wrong container otherwise."""
    failures = []

    def run(pods):
        out = subprocess.run(["jq", "-r", "-f", jq_file], input=json.dumps(pods), capture_output=True, text=True)
        if out.returncode != 0:
            failures.append(f"jq -f {jq_file}: {out.stderr.strip()}")
        return out.stdout.splitlines()

    for w in docs:
        if w["kind"] not in WORKLOADS or not any(c["name"] == "eipool-agent" for c in w["spec"]["template"]["spec"].get("initContainers", [])):
            continue
        template = w["spec"]["template"]
        others = sorted(c["name"] for c in template["spec"].get("initContainers", []) + template["spec"]["containers"]
                        if c["name"] != "eipool-agent")
        for mode in INJECTED:
            got = run(admitted(template, mode))
            if got:
                failures.append(f"{w['metadata']['name']} ({mode}): only the agent holds the role, yet {jq_file} prints {got}")
            got = run(admitted(template, mode, skip=False))
            named = sorted(line.split(":")[0].split("/")[1] for line in got)
            if named != others:
                failures.append(f"{w['metadata']['name']} ({mode}, no skip-containers): {jq_file} names {named}, not {others}")
            got = run(admitted(template, mode, role=False))
            if [line.split(":")[0].split("/")[1] for line in got] != ["eipool-agent"]:
                failures.append(f"{w['metadata']['name']} ({mode}, no role): {jq_file} does not say the agent has none ({got})")
    return failures


def rules_of(path):
    """The alert rules of a render (its PrometheusRules) or of a plain rules file (`groups:`),
    runbook links reduced to their anchors."""
    docs = load(path)
    groups = [g for d in docs if d.get("kind") == "PrometheusRule" for g in d["spec"]["groups"]]
    groups += [g for d in docs if "groups" in d for g in d["groups"]]
    out = []
    for g in groups:
        for r in g["rules"]:
            r = copy.deepcopy(r)
            if "runbook_url" in r.get("annotations", {}):
                r["annotations"]["runbook_url"] = "#" + r["annotations"]["runbook_url"].partition("#")[2]
            out.append(r)
    return out


def main(argv):
    self_testing = argv[:1] == ["--self-test"]
    if self_testing:
        argv = argv[1:]
    if argv[:1] == ["--verify-jq"] and len(argv) >= 3:
        failures = [f for path in argv[2:] for f in verify_jq_failures(argv[1], load(path))]
        for f in failures:
            print(f"check_wiring --verify-jq: {f}", file=sys.stderr)
        return 1 if failures else 0
    if argv[:1] == ["--same-rules"]:
        first, *rest = argv[1:]
        if not rules_of(first):
            print(f"check_wiring: {first} has no alert rules", file=sys.stderr)
            return 1
        differ = [p for p in rest if rules_of(p) != rules_of(first)]
        for p in differ:
            print(f"check_wiring: the alert rules of {first} and {p} differ", file=sys.stderr)
        return 1 if differ else 0
    if argv[:1] not in (["--operator"], ["--no-operator"]) or len(argv) < 2:
        print("usage: check_wiring.py [--self-test] --operator|--no-operator [--ipv6] RENDER.yaml... | --same-rules A B...",
              file=sys.stderr)
        return 2
    operator, paths = argv[0] == "--operator", argv[1:]
    ipv6 = paths[:1] == ["--ipv6"]
    paths = paths[1:] if ipv6 else paths
    status = 0
    for path in paths:
        if self_testing:
            missed = self_test(path, operator, ipv6)
            if missed:
                print(f"check_wiring --self-test: {path}:", *missed, sep="\n  - ", file=sys.stderr)
                status = 1
            continue
        failures = failures_of(load(path), operator, ipv6)
        if failures:
            print(f"check_wiring: {path}:", *failures, sep="\n  - ", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
