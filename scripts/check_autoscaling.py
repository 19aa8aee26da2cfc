"""The autoscaler-cap examples (deploy/autoscaling): the HPA targets the media Deployment of
deploy/base and its maxReplicas is the pool size it names; the KEDA ScaledObject targets it too
and clamps its query by the exporter's eipool_pool_addresses, free addresses included. The HPA's
schema is validated by scripts/check-deploy with kubernetes-validate."""

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
query = keda["spec"]["triggers"][0]["metadata"]["query"]
for needed in ["clamp_max", 'eipool_pool_addresses{pool="media",state="free"}']:
    if needed not in query:
        errors.append(f"keda-scaledobject.yaml: the query lacks {needed}")
for e in errors:
    print(f"check_autoscaling: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
