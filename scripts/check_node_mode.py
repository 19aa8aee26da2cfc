"""Node mode's wiring, checked on a rendered manifest (the kustomize overlay deploy/overlays/node
and the Helm chart with mode=node go through the same checks), and the Karpenter NodePool
example against it. Each WHY is one assertion.

    check_node_mode.py RENDER.yaml... [--nodepool NODEPOOL.yaml]   check each render
    check_node_mode.py --self-test RENDER.yaml...                   break each render in known
                                                                    ways; every break is caught

What it cannot do: run the ValidatingAdmissionPolicy's CEL (no API server runs here); it checks
the policy names the node-name claim, the service account, eipool's taint and label, and is
bound with Deny. tests/it/node.rs runs the binary against an emulation of the Node API.
"""
import json
import sys

import yaml


def flag(args, name):
    return args[args.index(name) + 1] if name in args else None


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def of_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def daemonset(docs):
    for d in of_kind(docs, "DaemonSet"):
        for c in d["spec"]["template"]["spec"].get("containers", []):
            if (c.get("args") or [None])[0] == "node":
                return d, c
    return None, None


def env(c, name):
    return next((e for e in c.get("env", []) if e["name"] == name), None)


def failures_of(docs, nodepool=None):
    out = []

    def check(ok, why):
        if not ok:
            out.append(why)

    ds, c = daemonset(docs)
    check(ds is not None, "a DaemonSet runs `eipool node`")
    if ds is None:
        return out
    spec = ds["spec"]["template"]["spec"]
    args = c["args"]
    taint = flag(args, "--node-taint") or "eipool.io/unassigned:NoSchedule"
    taint_key, effect = taint.split(":")[0].split("=")[0], taint.split(":")[-1]
    label = flag(args, "--node-label") or "eipool.io/public-ip"
    sa = spec.get("serviceAccountName")
    check(spec.get("hostNetwork") is True, "the node pod runs on the node's network (IMDSv2, the node's private IP)")
    check(
        any(t.get("key") == taint_key and t.get("operator") == "Exists" for t in spec.get("tolerations", [])),
        f"the node pod tolerates its own taint {taint_key} (else it never runs where it is needed)",
    )
    name = env(c, "EIPOOL_NODE_NAME")
    check(
        name is not None and name.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
        "EIPOOL_NODE_NAME comes from the downward API (spec.nodeName)",
    )
    check(flag(args, "--release-on-exit") is None and "--release-on-exit" not in args, "node mode never releases on exit (a restarted pod adopts the node's address)")
    host = {v["name"]: v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    host_dirs = [host[n] for n in mounts if n in host and mounts[n] == host[n]]
    check(len(host_dirs) == 1, "the node pod mounts one host directory at the same path (the env file's)")
    host_dir = host_dirs[0] if host_dirs else None
    listen = flag(args, "--listen")
    check(listen is None or listen.startswith("$(EIPOOL_POD_IP):") or listen.startswith("[$(EIPOOL_POD_IP)]:"),
          f"the node pod listens on the node's own IP, not every interface of the node (--listen {listen})")
    if listen is not None:
        pod_ip = env(c, "EIPOOL_POD_IP")
        check(pod_ip is not None and pod_ip.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP",
              "EIPOOL_POD_IP, which --listen names, comes from the downward API (status.podIP)")
    labels = ds["spec"]["template"]["metadata"].get("labels") or {}
    check("eipool/metrics" in labels and any(p.get("name") == "metrics" for p in c.get("ports", [])),
          "the node pod is scraped as every agent is (the label eipool/metrics, a port named metrics)")
    sc = c.get("securityContext") or {}
    check(sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add")
          and sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True,
          "the node container has no capability, no privilege escalation and a read-only root filesystem")
    check(spec.get("automountServiceAccountToken") is not False, "the node pod has its API token (it patches its Node)")
    for w in docs:
        if w.get("kind") in ("Deployment", "DaemonSet", "StatefulSet") and w is not ds:
            check(w["spec"]["template"]["spec"].get("automountServiceAccountToken") is False,
                  f"{w['metadata']['name']}: no pod but the node pod has a Kubernetes API token")
    output = flag(args, "--output")
    check(output is None or (host_dir is not None and output.startswith(host_dir.rstrip("/") + "/")), "the env file is written into the host directory")

    # The ServiceAccount: the IAM role, and RBAC exactly nodes get/patch.
    sas = {d["metadata"]["name"]: d for d in of_kind(docs, "ServiceAccount")}
    check(sa in sas, "the node pod's ServiceAccount is in the render")
    if sa in sas:
        check("eks.amazonaws.com/role-arn" in (sas[sa]["metadata"].get("annotations") or {}), "the node pod's ServiceAccount has the IAM role (IRSA)")
    roles = {d["metadata"]["name"]: d for d in of_kind(docs, "ClusterRole")}
    bound = [
        roles.get(b["roleRef"]["name"])
        for b in of_kind(docs, "ClusterRoleBinding")
        if any(s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in b.get("subjects", []))
    ]
    rules = [r for role in bound if role for r in role.get("rules", [])]
    check(
        rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}],
        "RBAC for the node pod: nodes get and patch, nothing else",
    )
    for b in of_kind(docs, "RoleBinding"):
        check(
            not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in b.get("subjects", [])),
            "no namespaced role for the node pod either",
        )

    # The admission policy: own Node only, eipool's taint and label only, bound with Deny.
    policies = of_kind(docs, "ValidatingAdmissionPolicy")
    check(len(policies) == 1, "one ValidatingAdmissionPolicy for node mode")
    if policies:
        p = policies[0]
        text = json.dumps(p["spec"])
        match = " ".join(m["expression"] for m in p["spec"].get("matchConditions", []))
        check(sa is not None and sa in match, "the policy applies to the node pod's service account")
        check("authentication.kubernetes.io/node-name" in text, "the policy holds each pod to the node-name of its token")
        check(f"t.key != '{taint_key}'" in text, f"the policy lets the pod change only the taint {taint_key}")
        check(f"k == '{label}'" in text, f"the policy lets the pod change only the label {label}")
        check("UPDATE" in p["spec"]["matchConstraints"]["resourceRules"][0]["operations"], "the policy looks at updates of Nodes")
        check(p["spec"].get("failurePolicy") == "Fail", "the policy fails closed")
        binds = [b for b in of_kind(docs, "ValidatingAdmissionPolicyBinding") if b["spec"]["policyName"] == p["metadata"]["name"]]
        check(len(binds) == 1 and binds[0]["spec"].get("validationActions") == ["Deny"], "the policy is bound with Deny")

    # The media workloads of node mode: no sidecar, no role, the env file read-only, on live Nodes.
    media = [
        d
        for d in of_kind(docs, "Deployment")
        if any(
            (v.get("hostPath") or {}).get("path") == host_dir for v in d["spec"]["template"]["spec"].get("volumes", [])
        )
    ]
    check(len(media) >= 1, "a media example mounts the host's env file directory")
    for m in media:
        ms = m["spec"]["template"]["spec"]
        what = m["metadata"]["name"]
        check(ms.get("automountServiceAccountToken") is False, f"{what}: no service account token in the media pod")
        check(ms.get("serviceAccountName") in (None, "default"), f"{what}: the media pod runs as no eipool ServiceAccount (no AWS role)")
        check(not ms.get("initContainers"), f"{what}: no eipool sidecar in the media pod")
        check(ms.get("hostNetwork") is True, f"{what}: the media pod is on the node's network (its public address)")
        check(
            not any(t.get("key") == taint_key for t in ms.get("tolerations", [])),
            f"{what}: the media pod does not tolerate eipool's taint",
        )
        terms = (ms.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", []))
        check(
            terms and all(any(e["key"] == label and e["operator"] == "Exists" for e in t.get("matchExpressions", [])) for t in terms),
            f"{what}: the media pod requires the label {label} (a Node with a live address)",
        )
        anti = ms.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
        check(any(a.get("topologyKey") == "kubernetes.io/hostname" for a in anti), f"{what}: one media pod per node")
        for mc in ms["containers"]:
            for mount in mc.get("volumeMounts", []):
                vol = next(v for v in ms["volumes"] if v["name"] == mount["name"])
                if (vol.get("hostPath") or {}).get("path") == host_dir:
                    check(mount.get("readOnly") is True, f"{what}: the env file is mounted read-only")
            msc = mc.get("securityContext") or {}
            check(msc.get("capabilities", {}).get("drop") == ["ALL"] and not msc.get("capabilities", {}).get("add")
                  and msc.get("allowPrivilegeEscalation") is False,
                  f"{what}: the media container has no capability (with hostNetwork NET_RAW reads the node's traffic) "
                  "and no privilege escalation")
            text = " ".join(mc.get("args", []) + mc.get("command", []))
            check(host_dir is not None and host_dir in text and ".env" in text, f"{what}: the media container sources the env file")

    if nodepool is not None:
        taints = nodepool["spec"]["template"]["spec"].get("startupTaints", [])
        check(
            any(t.get("key") == taint_key and t.get("effect") == effect for t in taints),
            f"the Karpenter NodePool starts nodes with the taint the node pod removes ({taint})",
        )
    return out


BREAKS = [
    ("no toleration", lambda docs: daemonset(docs)[0]["spec"]["template"]["spec"].__setitem__("tolerations", [])),
    ("node name by hand", lambda docs: daemonset(docs)[1]["env"].__setitem__(
        [e["name"] for e in daemonset(docs)[1]["env"]].index("EIPOOL_NODE_NAME"), {"name": "EIPOOL_NODE_NAME", "value": "n1"})),
    ("listening on every interface", lambda docs: daemonset(docs)[1]["args"].extend(["--listen", ":9877"])),
    ("node pod not scraped", lambda docs: daemonset(docs)[0]["spec"]["template"]["metadata"]["labels"].pop("eipool/metrics")),
    ("node container with a capability", lambda docs: daemonset(docs)[1]["securityContext"]["capabilities"].__setitem__(
        "add", ["NET_ADMIN"])),
    ("exporter with an API token", lambda docs: [
        d["spec"]["template"]["spec"].__setitem__("automountServiceAccountToken", True)
        for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("exporter")]),
    ("media container keeping NET_RAW", lambda docs: [
        c.__setitem__("securityContext", {"allowPrivilegeEscalation": False})
        for d in of_kind(docs, "Deployment") if "automountServiceAccountToken" in d["spec"]["template"]["spec"]
        for c in d["spec"]["template"]["spec"]["containers"]]),
    ("RBAC widened", lambda docs: of_kind(docs, "ClusterRole")[0]["rules"][0]["verbs"].append("update")),
    ("policy unbound", lambda docs: [docs.remove(b) for b in of_kind(docs, "ValidatingAdmissionPolicyBinding")]),
    ("policy without the node-name", lambda docs: of_kind(docs, "ValidatingAdmissionPolicy")[0]["spec"].__setitem__("variables", [])),
    ("media pod with a token", lambda docs: [
        d["spec"]["template"]["spec"].__setitem__("automountServiceAccountToken", True)
        for d in of_kind(docs, "Deployment") if "automountServiceAccountToken" in d["spec"]["template"]["spec"]]),
    ("media pod tolerating the taint", lambda docs: [
        d["spec"]["template"]["spec"].__setitem__("tolerations", [{"key": "eipool.io/unassigned", "operator": "Exists"}])
        for d in of_kind(docs, "Deployment") if "automountServiceAccountToken" in d["spec"]["template"]["spec"]]),
]


def self_test(path):
    missed = []
    for what, brk in BREAKS:
        docs = load(path)
        brk(docs)
        if not failures_of(docs):
            missed.append(what)
    return missed


def main(argv):
    if argv[:1] == ["--self-test"]:
        bad = {p: self_test(p) for p in argv[1:]}
        for p, missed in bad.items():
            if missed:
                print(f"check_node_mode --self-test: {p}: breaks not caught:", *missed, sep="\n  - ", file=sys.stderr)
        return 1 if any(bad.values()) else 0
    nodepool = None
    if "--nodepool" in argv:
        i = argv.index("--nodepool")
        nodepool = load(argv[i + 1])[0]
        argv = argv[:i] + argv[i + 2 :]
    status = 0
    for path in argv:
        fails = failures_of(load(path), nodepool)
        for f in fails:
            print(f"check_node_mode: {path}: {f}", file=sys.stderr)
        status |= bool(fails)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
