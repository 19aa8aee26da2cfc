"""The wiring of eipool's media-server pattern, checked on a rendered manifest: the kustomize
overlays and the Helm chart (its example workload, and a media chart of your own built from its
named templates) go through the same checks, so they cannot drift apart. Each WHY is one
assertion.

    check_wiring.py RENDER.yaml...              check each render
    check_wiring.py --self-test RENDER.yaml...  break each render in known ways and show that
                                                every break is caught (the checks can fail)
    check_wiring.py --same-rules A.yaml B.yaml  the two renders carry the same alert rules
"""
import copy
import re
import sys
from pathlib import Path

import yaml

RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "runbook.md"
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")
# An agent may wait in a full pool's line this long without its startupProbe restarting it.
DAY = 24 * 3600


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


def anchors():
    """The anchors of docs/runbook.md's headings, as GitHub makes them."""
    out = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^a-z0-9 -]", "", title).replace(" ", "-"))
    return out


def media_failures(docs, w):
    """The checks of one workload that runs the eipool agent."""
    failures = []

    def check(ok, why):
        if not ok:
            failures.append(f"{w['kind']}/{w['metadata']['name']}: {why}")

    spec = w["spec"]["template"]["spec"]
    labels = w["spec"]["template"]["metadata"].get("labels", {})
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
    check(app.get("livenessProbe", {}).get("failureThreshold", 3) == 1, "one failed liveness check restarts the media container")
    listen = flag(args, "--listen")
    listen_port = int(listen.rsplit(":", 1)[1]) if listen else 9877  # the agent's default port
    check(listen is None or not listen.startswith(("0.0.0.0:", "[::]:")),
          "the agent does not listen on a wildcard address of the host-network node (default: its private IP)")
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
    check(any(t.get("topologyKey") == "kubernetes.io/hostname" and t.get("labelSelector") and selects(t["labelSelector"], labels)
              for t in anti),
          "one media pod per node: a required podAntiAffinity on kubernetes.io/hostname selects the media pods "
          "(two on one node share its address, and the first to stop releases it under the other)")
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
    check(any(d["kind"] == "PodDisruptionBudget" and selects(d["spec"]["selector"], labels) for d in docs),
          "a PodDisruptionBudget covers the media pods")
    monitors = [d for d in docs if d["kind"] == "PodMonitor"]
    check(any(selects(m["spec"]["selector"], labels) for m in monitors), "a PodMonitor scrapes the agents")
    return failures


def failures_of(docs):
    failures = []

    def check(ok, why):
        if not ok:
            failures.append(why)

    media = [d for d in docs if d["kind"] in WORKLOADS
             and any(c["name"] == "eipool-agent" for c in d["spec"]["template"]["spec"].get("initContainers", []))]
    check(bool(media), "a media workload runs the eipool agent")
    for w in media:
        failures.extend(media_failures(docs, w))
    exporters = [d for d in docs if d["kind"] == "Deployment"
                 and any(c.get("args", [])[:1] == ["exporter"] for c in d["spec"]["template"]["spec"]["containers"])]
    check(len(exporters) == 1 and exporters[0]["spec"].get("replicas", 1) == 1, "one exporter serves the pool gauges")
    monitors = [d for d in docs if d["kind"] == "PodMonitor"]
    for e in exporters:
        labels = e["spec"]["template"]["metadata"].get("labels", {})
        check(any(selects(m["spec"]["selector"], labels) for m in monitors), "a PodMonitor scrapes the exporter")
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    check(len(rules) == 1, "the alerts are deployed")
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


BREAKS = [
    ("no preStop release", lambda d: _agent(d).pop("lifecycle"), "preStop runs"),
    ("two media pods allowed on one node",
     lambda d: _media(d)["spec"]["template"]["spec"].pop("affinity"), "one media pod per node"),
    ("no zone spread", lambda d: _media(d)["spec"]["template"]["spec"].pop("topologySpreadConstraints"), "spread over the zones"),
    ("Kubernetes' default grace period",
     lambda d: _media(d)["spec"]["template"]["spec"].pop("terminationGracePeriodSeconds"), "grace period"),
    ("the media container mounts the env file elsewhere",
     lambda d: [m.update(mountPath="/elsewhere") for m in _app(d)["volumeMounts"] if m["mountPath"] in _agent(d)["args"][2]],
     "same path"),
    ("no hostNetwork", lambda d: _media(d)["spec"]["template"]["spec"].pop("hostNetwork"), "hostNetwork"),
    ("the agent is not the first initContainer",
     lambda d: _media(d)["spec"]["template"]["spec"]["initContainers"].insert(0, {"name": "setup", "image": "busybox"}),
     "first initContainer"),
    ("a startupProbe shorter than a claim", lambda d: _agent(d)["startupProbe"].update(failureThreshold=10), "startupProbe waits"),
    ("a startupProbe that restarts a waiting agent", lambda d: _agent(d)["startupProbe"].update(failureThreshold=300), "waiting in a full pool's line"),
    ("no liveness restart of the media container", lambda d: _app(d).pop("livenessProbe"), "livenessProbe compares"),
    ("no --release-on-exit", lambda d: _agent(d)["args"].remove("--release-on-exit"), "--release-on-exit"),
    ("the agent on every interface", lambda d: _agent(d)["args"].extend(["--listen", "0.0.0.0:9877"]), "wildcard"),
    ("no IRSA annotation",
     lambda d: [s["metadata"].pop("annotations", None) for s in d if s["kind"] == "ServiceAccount"], "IRSA"),
    ("the PodMonitor selects other pods",
     lambda d: [m["spec"].update(selector={"matchLabels": {"app": "other"}}) for m in d if m["kind"] == "PodMonitor"],
     "PodMonitor scrapes the agents"),
    ("a runbook link to a home eipool does not have",
     lambda d: [r.setdefault("annotations", {}).update(runbook_url="https://github.com/eipool/eipool/blob/main/docs/runbook.md#drift")
                for p in d if p["kind"] == "PrometheusRule" for g in p["spec"]["groups"] for r in g["rules"]],
     "runbook base URL"),
    ("a runbook anchor that is not in docs/runbook.md",
     lambda d: [r["annotations"].update(runbook_url=r["annotations"]["runbook_url"].split("#")[0] + "#nowhere")
                for p in d if p["kind"] == "PrometheusRule" for g in p["spec"]["groups"] for r in g["rules"]],
     "is a heading"),
]


def self_test(path):
    docs = load(path)
    assert not failures_of(docs), f"{path} must pass before it is broken: {failures_of(docs)}"
    missed = []
    for what, brk, caught_by in BREAKS:
        broken = copy.deepcopy(docs)
        brk(broken)
        if not any(caught_by in f for f in failures_of(broken)):
            missed.append(f"{what}: not caught (expected a failure mentioning {caught_by!r})")
    return missed


def rules_of(path):
    """The alert rules of a render, runbook links reduced to their anchors."""
    out = []
    for d in load(path):
        if d["kind"] == "PrometheusRule":
            for g in d["spec"]["groups"]:
                for r in g["rules"]:
                    r = copy.deepcopy(r)
                    if "runbook_url" in r.get("annotations", {}):
                        r["annotations"]["runbook_url"] = "#" + r["annotations"]["runbook_url"].partition("#")[2]
                    out.append(r)
    return out


def main(argv):
    if argv[:1] == ["--self-test"]:
        bad = {p: self_test(p) for p in argv[1:]}
        for p, missed in bad.items():
            if missed:
                print(f"check_wiring --self-test: {p}:", *missed, sep="\n  - ", file=sys.stderr)
        return 1 if any(bad.values()) else 0
    if argv[:1] == ["--same-rules"]:
        a, b = argv[1:3]
        if rules_of(a) != rules_of(b):
            print(f"check_wiring: the alert rules of {a} and {b} differ", file=sys.stderr)
            return 1
        return 0
    status = 0
    for path in argv:
        failures = failures_of(load(path))
        if failures:
            print(f"check_wiring: {path}:", *failures, sep="\n  - ", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
