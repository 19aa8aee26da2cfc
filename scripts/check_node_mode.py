"""Node mode's wiring, checked on a rendered manifest (the kustomize overlay deploy/overlays/node
and the Helm chart with mode=node go through the same checks), and the Karpenter NodePool
example against it. Each WHY is one assertion.

    check_node_mode.py RENDER.yaml... [--nodepool NODEPOOL.yaml] [--all-nodes] [--namespace NS] [--ipv6]
        check each render (--all-nodes: a render whose DaemonSet runs on every node on purpose,
        the chart's node.allNodes; --namespace: its DaemonSet runs in NS; --ipv6: a render for an
        IPv6 cluster)
    check_node_mode.py --self-test RENDER.yaml... [--nodepool NODEPOOL.yaml]
        break each render (and the NodePool) in known ways; every break is caught

The ValidatingAdmissionPolicy's CEL is evaluated offline with cel-python (PyPI `cel-python`,
installed into .venv by scripts/bootstrap) against sample updates of a Node, as the API server
would: its matchConditions, its variables in order, then each validation (an error denies:
failurePolicy Fail). cel-python implements standard CEL; the policy uses only that (no Kubernetes
library function), so what it evaluates is what the API server evaluates, short of the API
server's type checking and cost limits, which only an API server can show. tests/it/node.rs runs
the binary against an emulation of the Node API.
"""
import copy
import functools
import json
import re
import sys

import yaml

try:
    import celpy
except ImportError:  # said once, in main()
    celpy = None


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


def seconds(duration):
    """`180s`, `3m`, `1h`, `500ms` (the flags' durations) in seconds."""
    m = re.fullmatch(r"([0-9]+)(ms|s|m|h)", duration or "")
    if not m:
        return None
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_taint(taint):
    """`KEY[=VALUE]:EFFECT` → (key, value or '', effect)."""
    kv, effect = taint.rsplit(":", 1)
    key, _, value = kv.partition("=")
    return key, value, effect


def required_terms(pod_spec):
    """The pod's required node affinity: a list of terms (ORed), each a list of (key, op, values)."""
    terms = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms", [])
    return [[(e["key"], e["operator"], e.get("values", [])) for e in t.get("matchExpressions", [])] for t in terms]


def required_keys(pod_spec):
    """Every Node label key the pod requires, through its nodeSelector or required affinity."""
    keys = set(pod_spec.get("nodeSelector") or {})
    for term in required_terms(pod_spec):
        keys |= {k for k, op, _ in term if op in ("In", "Exists", "Gt", "Lt")}
    return keys


# Labels Karpenter knows on every node it makes (its well-known labels): a pod may require them
# without the NodePool declaring them.
WELL_KNOWN = ("kubernetes.io/", "topology.kubernetes.io/", "node.kubernetes.io/", "karpenter.sh/",
              "karpenter.k8s.aws/", "topology.k8s.aws/")


def karpenter_allows(nodepool, key, op, values):
    """Whether one required label (KEY OP VALUES) falls within the NodePool's constraints: Karpenter
    makes a node only for pods whose constraints all do (https://karpenter.sh/docs/concepts/scheduling/).
    The NodePool declares a key by its template's labels or its requirements."""
    if key.startswith(WELL_KNOWN) and not key.startswith("kubernetes.io/hostname"):
        return True
    t = nodepool["spec"]["template"]
    labels = (t.get("metadata") or {}).get("labels") or {}
    reqs = [r for r in t["spec"].get("requirements", []) if r["key"] == key]
    if key in labels:
        have, any_value = {labels[key]}, False
    elif reqs:
        r = reqs[0]
        have, any_value = set(r.get("values", [])), r["operator"] == "Exists"
        if r["operator"] not in ("In", "Exists"):
            return False
    else:
        return op in ("DoesNotExist", "NotIn")
    if op == "Exists":
        return True
    if op == "In":
        return any_value or bool(have & set(values))
    if op == "NotIn":
        return any_value or bool(have - set(values))
    return False


def pod_fits_nodepool(pod_spec, nodepool):
    """The pod's nodeSelector and required affinity fall within the NodePool's, and the pod
    tolerates the NodePool's taints (not its startupTaints, which pods need not tolerate:
    https://karpenter.sh/docs/concepts/nodepools/)."""
    sel_ok = all(karpenter_allows(nodepool, k, "In", [v]) for k, v in (pod_spec.get("nodeSelector") or {}).items())
    terms = required_terms(pod_spec)
    aff_ok = not terms or any(all(karpenter_allows(nodepool, *req) for req in term) for term in terms)
    tols = pod_spec.get("tolerations") or []
    taints = nodepool["spec"]["template"]["spec"].get("taints") or []
    tol_ok = all(any(t.get("key") == taint.get("key") or (t.get("operator") == "Exists" and not t.get("key")) for t in tols)
                 for taint in taints)
    return sel_ok and aff_ok and tol_ok


# --- The admission policy, evaluated -------------------------------------------------------------

NODE = "ip-10-0-0-1.ec2.internal"
OTHER_NODE = "ip-10-0-0-2.ec2.internal"


def base_node(name=NODE):
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "resourceVersion": "41",
            "labels": {"kubernetes.io/hostname": name, "eipool.io/media": "true", "topology.kubernetes.io/zone": "us-east-1a"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"providerID": "aws:///us-east-1a/i-0123456789abcdef0",
                 "taints": [{"key": "example.com/gpu", "effect": "NoSchedule"}]},
    }


def admission_cases(label, taint, ns, sa):
    """(what, username, node-name claim, old Node, new Node, allowed?) for eipool's label and taint."""
    key, value, effect = parse_taint(taint)
    own = {"key": key, "effect": effect, **({"value": value} if value else {})}
    other_effect = "NoExecute" if effect != "NoExecute" else "NoSchedule"
    user = f"system:serviceaccount:{ns}:{sa}"

    def node(taints=None, labels=None, name=NODE, **meta):
        n = base_node(name)
        if taints is not None:
            n["spec"]["taints"] = taints
        if labels is not None:
            n["metadata"]["labels"].update(labels)
            n["metadata"]["labels"] = {k: v for k, v in n["metadata"]["labels"].items() if v is not None}
        n["metadata"].update(meta)
        return n

    gpu = {"key": "example.com/gpu", "effect": "NoSchedule"}
    tainted = node(taints=[gpu, own])
    held = node(labels={label: "203.0.113.7"})
    out = [
        ("eipool's taint removed and its label set (an address held)", user, NODE, tainted, held, True),
        ("eipool's label rewritten (drift)", user, NODE, held, node(labels={label: "198.51.100.9"}), True),
        ("eipool's taint back and its label removed (a loss)", user, NODE, held, tainted, True),
        ("the start-up check: a patch that changes nothing", user, NODE, tainted, copy.deepcopy(tainted), True),
        ("the node's last taint removed (spec.taints gone)", user, NODE,
         {**node(), "spec": {"taints": [own]}}, {**node(labels={label: "203.0.113.7"}), "spec": {}}, True),
        ("another service account's update (the policy is not for it)", "system:serviceaccount:kube-system:node-controller",
         NODE, tainted, node(taints=[gpu, own], labels={"example.com/team": "b"}), True),
        ("another label changed", user, NODE, tainted, node(taints=[gpu, own], labels={"example.com/team": "b"}), False),
        ("another label removed", user, NODE, held, node(labels={label: "203.0.113.7", "eipool.io/media": None}), False),
        ("another taint added", user, NODE, held, node(taints=[gpu, {"key": "example.com/x", "effect": "NoExecute"}],
                                                       labels={label: "203.0.113.7"}), False),
        ("another taint removed", user, NODE, tainted, node(taints=[], labels={label: "203.0.113.7"}), False),
        ("another Node (the token is bound to this one)", user, NODE, base_node(OTHER_NODE),
         {**base_node(OTHER_NODE), "metadata": {**base_node(OTHER_NODE)["metadata"], "labels": {
             **base_node(OTHER_NODE)["metadata"]["labels"], label: "203.0.113.7"}}}, False),
        ("a token without a node-name", user, None, tainted, held, False),
        ("eipool's service account of another namespace, on another Node", f"system:serviceaccount:elsewhere:{sa}",
         OTHER_NODE, tainted, held, False),
        (f"eipool's taint added with {other_effect}", user, NODE, held,
         node(taints=[gpu, {**own, "effect": other_effect}]), False),
        ("eipool's taint added with another value", user, NODE, held,
         node(taints=[gpu, {**own, "value": value + "x"}]), False),
        (f"eipool's key with {other_effect} removed (not the taint configured)", user, NODE,
         node(taints=[gpu, {**own, "effect": other_effect}]), held, False),
        ("eipool's taint added twice", user, NODE, held, node(taints=[gpu, own, own]), False),
        ("eipool's label set to a name", user, NODE, tainted, node(labels={label: "evil.example.com"}), False),
        ("eipool's label set to no IPv4 address (an octet over 255)", user, NODE, tainted, node(labels={label: "203.0.113.256"}), False),
        ("eipool's label set to an address with a leading zero", user, NODE, tainted, node(labels={label: "203.0.113.07"}), False),
        ("a finalizer added", user, NODE, held, node(labels={label: "203.0.113.7"}, finalizers=["example.com/hold"]), False),
        ("an ownerReference added", user, NODE, held, node(labels={label: "203.0.113.7"}, ownerReferences=[
            {"apiVersion": "v1", "kind": "Pod", "name": "eipool-node-x", "uid": "00000000-0000-0000-0000-000000000001"}]), False),
        ("an annotation changed", user, NODE, held, node(labels={label: "203.0.113.7"}, annotations={"x": "y"}), False),
        ("the Node cordoned", user, NODE, held, {**held, "spec": {**held["spec"], "unschedulable": True}}, False),
        # The spec fields an update may still set once (from empty: podCIDR on a VPC CNI node,
        # which has none) or that name the instance: none of eipool's.
        ("the Node's podCIDR set (it had none)", user, NODE, held,
         {**held, "spec": {**held["spec"], "podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}}, False),
        ("the Node's providerID set (it had none)", user, NODE, {**held, "spec": {**held["spec"], "providerID": ""}},
         {**held, "spec": {**held["spec"], "providerID": "aws:///us-east-1a/i-0fedcba9876543210"}}, False),
    ]
    return out


@functools.lru_cache(maxsize=None)
def program(expr):
    """One CEL expression compiled (once: parsing is most of cel-python's time)."""
    env = celpy.Environment()
    return env.program(env.compile(expr))


def admit(policy, username, node_name, old, new):
    """The policy's answer to an UPDATE of `old` into `new` by `username` whose token carries
    `node_name`: None (allowed, or not for this user) or why it denies."""
    extra = {"authentication.kubernetes.io/node-name": [node_name]} if node_name else {}
    request = {"operation": "UPDATE", "kind": {"group": "", "version": "v1", "kind": "Node"},
               "name": new["metadata"]["name"],
               "userInfo": {"username": username, "groups": ["system:serviceaccounts"], "extra": extra}}
    act = {"request": celpy.json_to_cel(request), "object": celpy.json_to_cel(new),
           "oldObject": celpy.json_to_cel(old), "params": None}

    def run(expr, act):
        return program(expr).evaluate(act)

    spec = policy["spec"]
    for m in spec.get("matchConditions", []):
        try:
            if not run(m["expression"], act):
                return None
        except Exception as e:  # failurePolicy Fail
            return f"matchCondition {m['name']} failed: {e}"
    # Variables in order, each seeing the ones before it (the API server evaluates them lazily;
    # every one is used, so eagerly gives the same answers).
    variables = celpy.celtypes.MapType({})
    act["variables"] = variables
    for v in spec.get("variables", []):
        try:
            variables[celpy.celtypes.StringType(v["name"])] = run(v["expression"], act)
        except Exception as e:
            return f"variable {v['name']} failed: {e}"
    for v in spec.get("validations", []):
        try:
            if not run(v["expression"], act):
                return v.get("message") or v["expression"]
        except Exception as e:
            return f"{v.get('message')}: error {e}"
    return None


def policy_failures(policy, label, taint, ns, sa):
    """The sample updates each answered as they must be."""
    out = []
    for what, user, node_name, old, new, allowed in admission_cases(label, taint, ns, sa):
        denied = admit(policy, user, node_name, old, new)
        if allowed and denied:
            out.append(f"the admission policy denies what eipool must do: {what} ({denied})")
        if not allowed and not denied:
            out.append(f"the admission policy allows: {what}")
    return out


def media_lifecycle_failures(mc, host_dir):
    """As `lifecycle_failures`, once per distinct script (the self-test's breaks mostly leave
    them alone)."""
    probe = (mc.get("livenessProbe") or {}).get("exec", {}).get("command", [])
    pool = next((e.get("value") for e in mc.get("env", []) if e["name"] == "EIPOOL_POOL"), None)
    return lifecycle_failures(tuple(mc.get("command") or ()), tuple(mc.get("args") or ()), tuple(probe), pool, host_dir)


@functools.lru_cache(maxsize=None)
def lifecycle_failures(command, args, probe, pool, host_dir):
    """Run the media container's entrypoint and liveness probe (their own shell text, with
    host_dir and /run/media moved into a temporary directory and a stand-in media-server) through
    what eipool does to the env file: absent at start, written, rewritten with another address
    (drift), removed (a loss), then the container restarted. What each should do is its WHY."""
    import os
    import subprocess
    import tempfile
    import time

    if command != ("/bin/sh", "-c") or len(args) != 1:
        return ["the media container runs one `/bin/sh -c` script (the entrypoint checked here)"]
    if probe[:2] != ("/bin/sh", "-c") or len(probe) != 3:
        return ["the media container's livenessProbe runs one `/bin/sh -c` script"]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        host, media, bin_ = (os.path.join(tmp, d) for d in ("eipool", "media", "bin"))
        for d in (host, media, bin_):
            os.mkdir(d)
        started = os.path.join(tmp, "started")
        fake = os.path.join(bin_, "media-server")
        with open(fake, "w") as f:
            f.write(f'#!/bin/sh\necho "$@" > {started}\n')
        os.chmod(fake, 0o755)

        def moved(text):
            return text.replace(host_dir, host).replace("/run/media", media)

        env = {"PATH": f"{bin_}:/usr/bin:/bin", "EIPOOL_POOL": pool or "media"}
        env_file = os.path.join(host, f"{env['EIPOOL_POOL']}.env")
        if not moved(args[0]).count(host):
            return ["the media container's entrypoint reads the env file from the host directory"]
        # The chart names the file itself (the pool in its name); kustomize through $EIPOOL_POOL.
        named = re.search(re.escape(host) + r"/([A-Za-z0-9._-]+\.env)", moved(args[0]))
        if named:
            env_file = os.path.join(host, named.group(1))

        def entrypoint():
            return subprocess.Popen(["/bin/sh", "-c", moved(args[0])], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def probe_ok():
            return subprocess.run(["/bin/sh", "-c", moved(probe[2])], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=10).returncode == 0

        def write(ip):
            with open(env_file + ".tmp", "w") as f:
                f.write(f"EIPOOL_PUBLIC_IP={ip}\nEIPOOL_ALLOCATION_ID=eipalloc-1\n")
            os.replace(env_file + ".tmp", env_file)

        def finished(p, within):
            try:
                p.wait(timeout=within)
                return True
            except subprocess.TimeoutExpired:
                return False

        def check(ok, why):
            if not ok:
                out.append(why)

        # The node holds nothing yet: the server waits for the file, announcing nothing, and the
        # kubelet does not restart it for that.
        p = entrypoint()
        check(not finished(p, 1.5), "with no env file yet (the node holds no address) the media container waits for it "
              "rather than failing (a crash loop's back-off would delay it once the address comes)")
        check(probe_ok(), "while the media container waits for the env file, its livenessProbe passes")
        write("203.0.113.7")
        check(finished(p, 10) and p.returncode == 0, "once the env file is written the media container starts")
        if p.poll() is None:
            p.kill()
        announced = open(started).read() if os.path.exists(started) else ""
        check("203.0.113.7" in announced, "the media server announces the env file's address")
        check(probe_ok(), "the livenessProbe passes while the env file names the announced address")
        write("203.0.113.8")
        check(not probe_ok(), "drift: the env file names another address, the livenessProbe fails (restart in place)")
        os.remove(env_file)
        check(not probe_ok(), "a loss: the env file is gone, the livenessProbe fails (the server no longer announces "
              "an address that is soon another node's)")
        # Restarted by the kubelet, with no address yet: it waits again, and is not restarted
        # for that.
        if os.path.exists(started):
            os.remove(started)
        p = entrypoint()
        time.sleep(1.5)
        check(p.poll() is None and probe_ok(), "restarted after a loss, the media container waits for the env file "
              "with a passing livenessProbe")
        p.kill()
        p.wait()
    return out


def failures_of(docs, nodepool=None, all_nodes=False, namespace=None, ipv6=False):
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
    taint_key, taint_value, effect = parse_taint(taint)
    label = flag(args, "--node-label") or "eipool.io/public-ip"
    sa = spec.get("serviceAccountName")
    check(spec.get("hostNetwork") is True, "the node pod runs on the node's network (IMDSv2, the node's private IP)")
    check(
        any(t.get("key") == taint_key and t.get("operator") == "Exists" for t in spec.get("tolerations", [])),
        f"the node pod tolerates its own taint {taint_key} (else it never runs where it is needed)",
    )
    ds_selector = spec.get("nodeSelector") or {}
    if all_nodes:
        check(not ds_selector and not required_terms(spec), "node.allNodes: the node pod runs on every node (no nodeSelector)")
    else:
        check(bool(ds_selector), "the node pod runs on the media nodes only (a nodeSelector): on every node, every node "
              "would claim an address")
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
    if ipv6:
        # A host-network pod's IP is the node's IPv6 address there, where the kubelet probes:
        # listening on the node's private IPv4 (the default) fails every probe.
        check(listen is not None and listen.startswith("[$(EIPOOL_POD_IP)]:"),
              f"on IPv6 the node pod listens on its pod IP, where the kubelet probes (--listen [$(EIPOOL_POD_IP)]:PORT; it has {listen})")
    if listen is not None:
        pod_ip = env(c, "EIPOOL_POD_IP")
        check(pod_ip is not None and pod_ip.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP",
              "EIPOOL_POD_IP, which --listen names, comes from the downward API (status.podIP)")
    labels = ds["spec"]["template"]["metadata"].get("labels") or {}
    check("eipool/metrics" in labels and any(p.get("name") == "metrics" for p in c.get("ports", [])),
          "the node pod is scraped as every agent is (the label eipool/metrics, a port named metrics)")
    # Until it serves /healthz (after the start-up check of its Node and RBAC and its identity,
    # each bounded by --timeout) the liveness probe would restart it: a startupProbe on the same
    # endpoint holds the liveness probe back for longer than that.
    live, start = c.get("livenessProbe") or {}, c.get("startupProbe") or {}
    check(bool(start.get("httpGet")) and start.get("httpGet") == live.get("httpGet"),
          "the node pod has a startupProbe on its liveness probe's endpoint (else the liveness probe may restart it "
          "before it serves)")
    timeout = seconds(flag(args, "--timeout") or "180s") or 0
    covers = start.get("periodSeconds", 10) * start.get("failureThreshold", 3)
    check(covers > timeout, f"the node pod's startupProbe lasts longer than a claim (--timeout {timeout:g} s; it gives "
          f"{covers} s)")
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
    bindings = [b for b in of_kind(docs, "ClusterRoleBinding")
                if any(s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in b.get("subjects", []))]
    rules = [r for b in bindings for r in (roles.get(b["roleRef"]["name"]) or {}).get("rules", [])]
    check(
        rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}],
        "RBAC for the node pod: nodes get and patch, nothing else",
    )
    for b in of_kind(docs, "RoleBinding"):
        check(
            not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in b.get("subjects", [])),
            "no namespaced role for the node pod either",
        )
    # The node pod's namespace: the DaemonSet's (kustomize), else the binding's (Helm renders no
    # namespace; the binding names the release's).
    subject_ns = {s.get("namespace") for b in bindings for s in b["subjects"] if s.get("name") == sa}
    ns = ds["metadata"].get("namespace") or next(iter(subject_ns), None)
    if namespace is not None:
        check(ds["metadata"].get("namespace") == namespace, f"the node pod runs in the namespace {namespace}")
    check(subject_ns == {ns}, f"the RBAC binding names the node pod's ServiceAccount in its namespace {ns} "
          f"(it names {sorted(x or '' for x in subject_ns)})")

    # The admission policy: own Node only, eipool's taint and label only, bound with Deny.
    policies = of_kind(docs, "ValidatingAdmissionPolicy")
    check(len(policies) == 1, "one ValidatingAdmissionPolicy for node mode")
    if policies:
        p = policies[0]
        text = json.dumps(p["spec"])
        match = " ".join(m["expression"] for m in p["spec"].get("matchConditions", []))
        check("authentication.kubernetes.io/node-name" in text, "the policy holds each pod to the node-name of its token")
        check(f"t.key != '{taint_key}'" in text, f"the policy lets the pod change only the taint {taint_key}")
        check(f"k == '{label}'" in text, f"the policy lets the pod change only the label {label}")
        check(f"t.effect == '{effect}'" in text and f"== '{taint_value}'" in text,
              f"the policy pins eipool's taint to its effect and value ({taint})")
        check(".matches(" in text and "25[0-5]" in text, f"the policy holds the label {label} to an IPv4 address")
        check("metadata.finalizers" in text and "metadata.ownerReferences" in text,
              "the policy forbids changes of the Node's finalizers and ownerReferences")
        check("UPDATE" in p["spec"]["matchConstraints"]["resourceRules"][0]["operations"], "the policy looks at updates of Nodes")
        check(p["spec"].get("failurePolicy") == "Fail", "the policy fails closed")
        binds = [b for b in of_kind(docs, "ValidatingAdmissionPolicyBinding") if b["spec"]["policyName"] == p["metadata"]["name"]]
        check(len(binds) == 1 and binds[0]["spec"].get("validationActions") == ["Deny"], "the policy is bound with Deny")
        if celpy is not None and sa and ns:
            # Its user: the node pod's ServiceAccount in its namespace, and in any other (a
            # namespace-changing overlay moves the ServiceAccount, not the policy's text).
            # Renamed too: an outer overlay's namePrefix/nameSuffix renames the ServiceAccount and
            # every reference to it, but not its name inside the policy's CEL.
            for where, name, why in ((ns, sa, "in its namespace"), ("another-namespace", sa, "in any namespace"),
                                     (ns, f"prod-{sa}-v2", "renamed by an outer overlay's namePrefix and nameSuffix")):
                who = f"system:serviceaccount:{where}:{name}"
                check(admit(p, who, OTHER_NODE, base_node(), base_node()) is not None,
                      f"the policy applies to {who} (the node pod's ServiceAccount {why})")
            out.extend(policy_failures(p, label, taint, ns, sa))

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
            not any(t.get("key") == taint_key or (t.get("operator") == "Exists" and not t.get("key")) for t in ms.get("tolerations", [])),
            f"{what}: the media pod does not tolerate eipool's taint (the startup taint gates it)",
        )
        # Karpenter makes no node for a pod that requires a label no NodePool declares, and
        # eipool's label comes only after the node exists: the media pod selects the media nodes'
        # own label (the DaemonSet's nodeSelector) and lets the taint gate it.
        check(label not in required_keys(ms), f"{what}: the media pod does not require the label {label} (no NodePool "
              "declares it: Karpenter would never start a node for it); select the media nodes' own label")
        ms_selector = ms.get("nodeSelector") or {}
        check(all(ms_selector.get(k) == v for k, v in ds_selector.items()),
              f"{what}: the media pod selects the media nodes, where the node pod runs (nodeSelector {ds_selector})")
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
            if host_dir is not None:
                for why in media_lifecycle_failures(mc, host_dir):
                    check(False, f"{what}: {why}")
        if nodepool is not None:
            check(pod_fits_nodepool(ms, nodepool), f"{what}: the media pod's node selection falls within the Karpenter "
                  "NodePool's labels and requirements, and it tolerates the NodePool's taints (else Karpenter makes no "
                  "node for it)")

    if nodepool is not None:
        tmpl = nodepool["spec"]["template"]
        taints = tmpl["spec"].get("startupTaints", [])
        check(
            any(t.get("key") == taint_key and t.get("effect") == effect and t.get("value", "") == taint_value for t in taints),
            f"the Karpenter NodePool starts nodes with the taint the node pod removes ({taint}, startupTaints)",
        )
        check(not any(t.get("key") == taint_key for t in tmpl["spec"].get("taints", [])),
              f"the Karpenter NodePool has {taint_key} in startupTaints only (in taints, media pods would have to "
              "tolerate it and it would never gate them)")
        # Drift and consolidation start a replacement and wait for it to be initialized (its
        # startup taints gone) before deleting the old node: with every address held, the
        # replacement waits in the pool's line and never is. A budget in nodes says how many
        # spare addresses that takes (the default, 10%, grows with the fleet).
        budgets = (nodepool["spec"].get("disruption") or {}).get("budgets") or []
        check(bool(budgets) and all(re.fullmatch(r"[0-9]+", str(b.get("nodes", ""))) for b in budgets),
              "the Karpenter NodePool caps its disruptions with budgets in nodes (each replacement needs a spare address; "
              "the default 10% grows with the fleet)")
        node_labels = (tmpl.get("metadata") or {}).get("labels") or {}
        check(all(node_labels.get(k) == v for k, v in ds_selector.items()),
              f"the Karpenter NodePool's nodes carry the node pod's nodeSelector {ds_selector} (template labels), "
              "so it runs on them")
    return out


def marks(docs):
    """The render's (label, taint key), as its DaemonSet gives them."""
    args = daemonset(docs)[1]["args"]
    return flag(args, "--node-label") or "eipool.io/public-ip", parse_taint(flag(args, "--node-taint") or "eipool.io/unassigned:NoSchedule")[0]


def media_pods(docs):
    """The media examples: the Deployments that mount a host directory (the env file's)."""
    return [d for d in of_kind(docs, "Deployment") if any("hostPath" in v for v in d["spec"]["template"]["spec"].get("volumes", []))]


def policy(docs):
    return of_kind(docs, "ValidatingAdmissionPolicy")[0]["spec"]


def validation(docs, word):
    return next(v for v in policy(docs)["validations"] if word in v["expression"])


def always(v):
    """A validation whose text still names everything but which passes whatever it is given:
    caught only by evaluating it."""
    v["expression"] = f"true || ({v['expression']})"


BREAKS = [
    ("no toleration", lambda docs, np: daemonset(docs)[0]["spec"]["template"]["spec"].__setitem__("tolerations", [])),
    ("node name by hand", lambda docs, np: daemonset(docs)[1]["env"].__setitem__(
        [e["name"] for e in daemonset(docs)[1]["env"]].index("EIPOOL_NODE_NAME"), {"name": "EIPOOL_NODE_NAME", "value": "n1"})),
    ("listening on every interface", lambda docs, np: daemonset(docs)[1]["args"].extend(["--listen", ":9877"])),
    ("node pod not scraped", lambda docs, np: daemonset(docs)[0]["spec"]["template"]["metadata"]["labels"].pop("eipool/metrics")),
    ("node container with a capability", lambda docs, np: daemonset(docs)[1]["securityContext"]["capabilities"].__setitem__(
        "add", ["NET_ADMIN"])),
    ("node pod on every node", lambda docs, np: daemonset(docs)[0]["spec"]["template"]["spec"].pop("nodeSelector")),
    ("node pod without a startupProbe", lambda docs, np: daemonset(docs)[1].pop("startupProbe")),
    ("node pod's startupProbe shorter than a claim", lambda docs, np: daemonset(docs)[1]["startupProbe"].update(
        {"periodSeconds": 10, "failureThreshold": 3})),
    ("exporter with an API token", lambda docs, np: [
        d["spec"]["template"]["spec"].__setitem__("automountServiceAccountToken", True)
        for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("exporter")]),
    ("media container keeping NET_RAW", lambda docs, np: [
        c.__setitem__("securityContext", {"allowPrivilegeEscalation": False})
        for d in media_pods(docs) for c in d["spec"]["template"]["spec"]["containers"]]),
    ("RBAC widened", lambda docs, np: of_kind(docs, "ClusterRole")[0]["rules"][0]["verbs"].append("update")),
    ("policy unbound", lambda docs, np: [docs.remove(b) for b in of_kind(docs, "ValidatingAdmissionPolicyBinding")]),
    ("policy without the node-name", lambda docs, np: policy(docs).__setitem__("variables", [])),
    ("policy for one namespace's ServiceAccount (a namespace-changing overlay leaves it behind)", lambda docs, np:
        policy(docs)["matchConditions"][0].__setitem__("expression", "request.userInfo.username == 'system:serviceaccount:{}:{}'".format(
            daemonset(docs)[0]["metadata"].get("namespace") or of_kind(docs, "ClusterRoleBinding")[0]["subjects"][0]["namespace"],
            daemonset(docs)[0]["spec"]["template"]["spec"]["serviceAccountName"]))),
    ("policy for the ServiceAccount's exact name (an outer overlay's namePrefix leaves it behind)", lambda docs, np:
        policy(docs)["matchConditions"][0].__setitem__("expression", "request.userInfo.username.startsWith('system:serviceaccount:') "
            "&& request.userInfo.username.endsWith(':{}')".format(daemonset(docs)[0]["spec"]["template"]["spec"]["serviceAccountName"]))),
    ("policy without the finalizers rule", lambda docs, np: policy(docs)["validations"].remove(validation(docs, "finalizers"))),
    ("policy's finalizers rule passing anything", lambda docs, np: always(validation(docs, "finalizers"))),
    ("policy without the podCIDR and providerID rule", lambda docs, np: policy(docs)["validations"].remove(validation(docs, "podCIDR"))),
    ("policy's taint rule passing any effect", lambda docs, np: always(validation(docs, "t.effect"))),
    ("policy's label rule passing any value", lambda docs, np: always(validation(docs, ".matches("))),
    ("policy's other-labels rule passing anything", lambda docs, np: always(validation(docs, "variables.oldLabels.all"))),
    ("media pod with a token", lambda docs, np: [
        d["spec"]["template"]["spec"].__setitem__("automountServiceAccountToken", True) for d in media_pods(docs)]),
    ("media pod tolerating the taint", lambda docs, np: [
        d["spec"]["template"]["spec"].__setitem__("tolerations", [{"key": marks(docs)[1], "operator": "Exists"}])
        for d in media_pods(docs)]),
    ("media pod requiring eipool's label (Karpenter never starts its node)", lambda docs, np: [
        d["spec"]["template"]["spec"]["affinity"].__setitem__("nodeAffinity", {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": marks(docs)[0], "operator": "Exists"}]}]}})
        for d in media_pods(docs)]),
    ("media entrypoint failing with no env file (the node holds no address yet)", lambda docs, np: [
        c.__setitem__("args", [re.sub(r"^.*?done; ", "", c["args"][0])])
        for d in media_pods(docs) for c in d["spec"]["template"]["spec"]["containers"]]),
    ("media probe restarting a server that waits for the env file", lambda docs, np: [
        c["livenessProbe"]["exec"]["command"].__setitem__(2, re.sub(r"^.*?\|\| \{ (.*); \}$", r"\1", c["livenessProbe"]["exec"]["command"][2]))
        for d in media_pods(docs) for c in d["spec"]["template"]["spec"]["containers"]]),
    ("media pod not selecting the media nodes", lambda docs, np: [
        d["spec"]["template"]["spec"].pop("nodeSelector", None) for d in media_pods(docs)]),
]

# Breaks that apply only to a render whose DaemonSet names its namespace (kustomize's; Helm
# renders none, the binding names the release's).
NAMESPACED_BREAKS = [
    ("RBAC bound in another namespace", lambda docs, np: [
        s.__setitem__("namespace", "elsewhere") for b in of_kind(docs, "ClusterRoleBinding") for s in b["subjects"]]),
]

NODEPOOL_BREAKS = [
    ("NodePool without a disruption budget", lambda docs, np: np["spec"]["disruption"].pop("budgets", None)),
    ("NodePool without the media label", lambda docs, np: np["spec"]["template"]["metadata"].__setitem__("labels", {})),
    ("NodePool without the startup taint", lambda docs, np: np["spec"]["template"]["spec"].__setitem__("startupTaints", [])),
    ("NodePool with the taint as a plain taint", lambda docs, np: np["spec"]["template"]["spec"].__setitem__(
        "taints", np["spec"]["template"]["spec"]["startupTaints"])),
]


def self_test(path, nodepool):
    missed = []
    namespaced = bool(daemonset(load(path))[0]["metadata"].get("namespace"))
    breaks = BREAKS + (NAMESPACED_BREAKS if namespaced else []) + (NODEPOOL_BREAKS if nodepool is not None else [])
    for what, brk in breaks:
        docs, np = load(path), copy.deepcopy(nodepool)
        brk(docs, np)
        if not failures_of(docs, np):
            missed.append(what)
    return missed


def main(argv):
    if celpy is None:
        print("check_node_mode: cel-python is missing from .venv (it evaluates the admission policy): run scripts/bootstrap",
              file=sys.stderr)
        return 1
    nodepool = None
    if "--nodepool" in argv:
        i = argv.index("--nodepool")
        nodepool = load(argv[i + 1])[0]
        argv = argv[:i] + argv[i + 2 :]
    all_nodes = "--all-nodes" in argv
    argv = [a for a in argv if a != "--all-nodes"]
    namespace = None
    if "--namespace" in argv:
        i = argv.index("--namespace")
        namespace = argv[i + 1]
        argv = argv[:i] + argv[i + 2 :]
    ipv6 = "--ipv6" in argv
    argv = [a for a in argv if a != "--ipv6"]
    if argv[:1] == ["--self-test"]:
        bad = {p: self_test(p, nodepool) for p in argv[1:]}
        for p, missed in bad.items():
            if missed:
                print(f"check_node_mode --self-test: {p}: breaks not caught:", *missed, sep="\n  - ", file=sys.stderr)
        return 1 if any(bad.values()) else 0
    status = 0
    for path in argv:
        fails = failures_of(load(path), nodepool, all_nodes, namespace, ipv6)
        for f in fails:
            print(f"check_node_mode: {path}: {f}", file=sys.stderr)
        status |= bool(fails)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
