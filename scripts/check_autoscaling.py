"""The autoscaler-cap examples (deploy/autoscaling): the HPA targets the media Deployment of
deploy/base and its maxReplicas is the pool size it names; the KEDA ScaledObject targets it too
and clamps its query by the exporter's eipool_pool_addresses of the example overlay's pool, free
addresses included, an empty answer being an error (not a 0 that scales down). The HPA's schema is
validated by scripts/check-deploy with kubernetes-validate."""

import re
import sys

import yaml

base = yaml.safe_load(open("deploy/base/media-server.yaml"))
media = base["metadata"]["name"]
errors = []
hpa = yaml.safe_load(open("deploy/autoscaling/hpa.yaml"))
if hpa["spec"]["scaleTargetRef"]["name"] != media:
    errors.append(f"hpa.yaml: scaleTargetRef is not the media Deployment {media!r}")
size = int(hpa["metadata"]["annotations"]["eipool.io/pool-size"])
if hpa["spec"]["maxReplicas"] != size:
    errors.append(f"hpa.yaml: maxReplicas {hpa['spec']['maxReplicas']} is not the pool size {size}")
keda = yaml.safe_load(open("deploy/autoscaling/keda-scaledobject.yaml"))
if keda["kind"] != "ScaledObject" or not keda["apiVersion"].startswith("keda.sh/"):
    errors.append("keda-scaledobject.yaml: not a KEDA ScaledObject")
if keda["spec"]["scaleTargetRef"]["name"] != media:
    errors.append(f"keda-scaledobject.yaml: scaleTargetRef is not {media!r}")
trigger = keda["spec"]["triggers"][0]["metadata"]
query = trigger["query"]
overlay = yaml.safe_load(open("deploy/overlays/example/kustomization.yaml"))
# The example overlay's EIPOOL_POOL (its JSON patch of the ConfigMap eipool).
pool = next(p["patch"].split("value:")[1].strip() for p in overlay["patches"]
            if p["target"].get("name") == "eipool" and p["target"]["kind"] == "ConfigMap")
pools = set(re.findall(r'eipool_pool_addresses\{pool="([^"]*)"', query))
if pools != {pool}:
    errors.append(f"keda-scaledobject.yaml: the query reads pool(s) {sorted(pools)}, not the example overlay's {pool!r}")
if not re.search(r'state=~?"[^"]*\bfree\b', query):
    errors.append("keda-scaledobject.yaml: the cap counts no free addresses")
if trigger.get("ignoreNullValues") != "false":
    errors.append('keda-scaledobject.yaml: ignoreNullValues is not "false": a pool name that matches nothing would read as 0 '
                  "and scale the media servers down to minReplicaCount")
for e in errors:
    print(f"check_autoscaling: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
