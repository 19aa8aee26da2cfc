"""The wiring of the rendered media-server pattern, checked: each line of WHY is one assertion."""
import shlex
import sys

import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
failures = []


def check(ok, why):
    if not ok:
        failures.append(why)


def flag(args, name):
    return args[args.index(name) + 1] if name in args else None


def mount_dir(container, volume):
    return next((m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] == volume), None)


media = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "media-server")
spec = media["spec"]["template"]["spec"]
inits = spec.get("initContainers", [])
mains = {c["name"]: c for c in spec["containers"]}
agent, app = next((c for c in inits if c["name"] == "eipool-agent"), None), mains.get("media")

check(spec.get("hostNetwork") is True, "hostNetwork is on (the Elastic IP is the node's)")
check(agent is not None and agent["args"][0] == "agent" and agent.get("restartPolicy") == "Always",
      "the agent is a native sidecar (initContainer, restartPolicy Always) running `eipool agent`")
check(bool(inits) and inits[0] is agent,
      "the agent is the first initContainer: it claims, with /metrics up from the start")
output = flag(agent["args"], "--output")
check(output is not None, "the agent writes the env file (--output)")
volume = next((m["name"] for m in agent.get("volumeMounts", []) if output and output.startswith(m["mountPath"] + "/")), None)
check(volume is not None, "the env file is on a mounted volume")
check(any(v["name"] == volume and "emptyDir" in v for v in spec.get("volumes", [])), "that volume is a shared emptyDir")
check(mount_dir(app, volume) == mount_dir(agent, volume), "the media container mounts the env file's volume at the same path")
start = " ".join(app.get("args", []) + app.get("command", []))
check(output in start, "the media container sources the env file")
live = " ".join(app.get("livenessProbe", {}).get("exec", {}).get("command", []))
check(output in live and "EIPOOL_PUBLIC_IP" in live,
      "the media container's livenessProbe compares the env file's address with the one it started on (restart on a new address)")
remembered = [w for w in start.replace('"', " ").split() if w.startswith("/") and w != output and w in live]
check(bool(remembered), "the address the media container started with is written where its livenessProbe reads it")
check(app.get("livenessProbe", {}).get("failureThreshold", 3) == 1, "one failed liveness check restarts the media container")
listen = flag(agent["args"], "--listen")
listen_port = int(listen.rsplit(":", 1)[1]) if listen else 9877  # the agent's default port
check(listen is None or not listen.startswith(("0.0.0.0:", ":")),
      "the agent does not listen on every interface of the host-network node (default: its private IP)")
check(any(p["containerPort"] == listen_port for p in agent.get("ports", [])), "the agent exposes its --listen port")
for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/readyz")]:
    get = agent.get(probe, {}).get("httpGet", {})
    check(get.get("path") == path and get.get("port") == listen_port, f"the agent's {probe} hits {path} on its own port")
pre = agent.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
check(pre[:2] == ["eipool", "release"], "preStop runs `eipool release`")
check(flag(pre, "--env-file") == output, "the release names the claimed association (--env-file)")
startup = agent.get("startupProbe", {})
check(startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= 200,
      "the startupProbe waits longer than one claim's --timeout (180 s)")
check(spec.get("terminationGracePeriodSeconds", 30) >= 60, "the grace period covers drain plus release")
check(spec.get("serviceAccountName") == "eipool", "pods run as the IRSA service account")
sa = next(d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "eipool")
check("eks.amazonaws.com/role-arn" in sa["metadata"].get("annotations", {}), "the service account is annotated for IRSA")
check(any(d["kind"] == "PodDisruptionBudget" for d in docs), "a PodDisruptionBudget exists")
check(any(d["kind"] == "PrometheusRule" for d in docs), "the alerts are deployed")
check(any(d["kind"] == "Deployment" and d["metadata"]["name"] == "eipool-exporter" for d in docs), "one exporter serves the pool gauges")

if failures:
    print(f"check_wiring: {sys.argv[1]}:", *failures, sep="\n  - ", file=sys.stderr)
    sys.exit(1)
