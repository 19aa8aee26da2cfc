"""The autoscaler-cap examples (deploy/autoscaling): the HPA targets the media Deployment of
deploy/base and its maxReplicas is the pool size it names; the KEDA ScaledObject targets it too
and clamps its query by the exporter's eipool_pool_addresses of the example overlay's pool, free
addresses included, an empty answer being an error (not a 0 that scales down), and promtool
evaluates its query on series: min(load, cap), and nothing when the load or the cap is missing
(`(load <= cap) or cap` scaled to the cap when the load metric was absent). The HPA's schema is
validated by scripts/check-deploy with kubernetes-validate."""

import os
import re
import subprocess
import sys
import tempfile

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


def query_cases(query, pool):
    """promtool's unit tests of `query`: (what, input series, expected samples)."""
    def gauges(free, assigned):
        return [{"series": f'eipool_pool_addresses{{pool="{pool}",state="{state}",pod="exporter-1"}}', "values": f"{n}x5"}
                for state, n in (("free", free), ("assigned", assigned))]

    def sessions(n):
        return [{"series": 'media_active_sessions{pod="media-1"}', "values": f"{n}x5"}]

    return [
        ("the load (100 sessions: 2 servers) under the cap (5 addresses)", sessions(100) + gauges(2, 3), [{"labels": "{}", "value": 2}]),
        ("the cap (5) under the load (1000 sessions: 20)", sessions(1000) + gauges(2, 3), [{"labels": "{}", "value": 5}]),
        ("no load metric: nothing (an error to KEDA), not the cap", gauges(2, 3), []),
        ("no pool gauges: nothing, not the load", sessions(100), []),
    ]


def query_failures(query, pool):
    doc = {"rule_files": [], "evaluation_interval": "1m", "tests": [
        {"name": what, "interval": "1m", "input_series": series,
         "promql_expr_test": [{"expr": query, "eval_time": "2m", "exp_samples": want}]}
        for what, series, want in query_cases(query, pool)]}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "keda-query.test.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
        out = subprocess.run(["promtool", "test", "rules", path], capture_output=True, text=True)
    if out.returncode != 0:
        return [f"keda-scaledobject.yaml: the query is not min(load, cap), or not empty when one is missing (promtool):\n"
                f"{out.stdout.strip()}\n{out.stderr.strip()}"]
    return []


errors += query_failures(query, pool)
# The query as it was, (load <= cap) or cap, must fail here: the test can fail.
broken = "(ceil(sum(media_active_sessions) / 50) <= sum(eipool_pool_addresses{pool=\"%s\"})) or sum(eipool_pool_addresses{pool=\"%s\"})"
if not query_failures(broken % (pool, pool), pool):
    errors.append("the query's promtool test passed `(load <= cap) or cap`, which scales to the cap without a load metric")
for e in errors:
    print(f"check_autoscaling: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
