"""One ServiceAccount and one namespace wherever a first deploy takes them from: the Terraform
module's defaults (its IRSA trust and its Pod Identity association name them), the chart's default
render under any release name, the kustomize base and every overlay (all in the namespace set in
the example overlay, whatever it is), the README's `helm install` as written, and the module's own
examples. A media pod whose ServiceAccount or namespace is not the one the role trusts cannot
assume the role: every claim exits 77. And the README's first deploy as written works: the
namespace before the Secret in it, no example workload with a placeholder image, the label
kube-prometheus-stack selects; the example overlay makes no Redis Secret (it would overwrite the
one you manage).

    check_defaults.py              check
    check_defaults.py --self-test  break a copy in known ways and show each break caught
"""
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import hcl2
import yaml

ROOT = Path(__file__).resolve().parent.parent
HELM = ROOT / ".venv" / "bin" / "helm"
KUBECTL = ROOT / ".venv" / "bin" / "kubectl"
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")
OVERLAYS = ("example", "trial", "prometheus-operator", "node")
# A namespace no file names: the example overlay set to it, every overlay must follow.
MOVED = "eipool-moved"
OPERATOR = ["--api-versions", "monitoring.coreos.com/v1/PodMonitor", "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]


def unq(s):
    return s[1:-1] if isinstance(s, str) and len(s) >= 2 and s[0] == s[-1] == '"' else s


def module_defaults(root):
    """The module's `service_account` and `namespace` defaults (variables.tf)."""
    doc = hcl2.loads((root / "deploy/terraform/variables.tf").read_text())
    out = {}
    for entry in doc["variable"]:
        for name, body in entry.items():
            if unq(name) in ("service_account", "namespace"):
                out[unq(name)] = unq(body.get("default"))
    return out


def readme_commands(root):
    """The commands of the README's ```sh block with the `helm install` of a first deploy, each
    as argv (continuation lines joined, comments dropped), or None."""
    text = (root / "README.md").read_text()
    block = next((b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "helm install" in b), None)
    if block is None:
        return None
    lines = [re.sub(r"\s+#.*$", "", line) for line in block.splitlines()]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def readme_helm_install(root):
    """The README's `helm install` command, as argv for `helm template`."""
    commands = readme_commands(root)
    argv = next((c for c in commands or [] if c[:2] == ["helm", "install"]), None)
    return None if argv is None else ["template"] + argv[2:]


def kustomize(root, overlay):
    out = subprocess.run([str(KUBECTL), "kustomize", str(overlay)], cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def namespaces_when_moved(root):
    """{overlay: namespaces of its objects} with the example overlay's namespace set to MOVED (in
    a copy), as a user sets theirs."""
    with tempfile.TemporaryDirectory() as tmp:
        deploy = Path(tmp) / "deploy"
        shutil.copytree(root / "deploy", deploy)
        example = deploy / "overlays/example/kustomization.yaml"
        text = example.read_text()
        example.write_text(re.sub(r"^namespace: .*$", f"namespace: {MOVED}", text, count=1, flags=re.M))
        out = {}
        for o in OVERLAYS:
            try:
                out[o] = {n for d in kustomize(root, deploy / "overlays" / o) for n in namespaces_named(d)}
            except RuntimeError as e:
                out[o] = {f"(no render: {e})"}
        return out


# Cluster-scoped kinds that name no namespace (node mode's ClusterRole and policy binding).
UNNAMESPACED = ("ClusterRole", "ValidatingAdmissionPolicyBinding")


def namespaces_named(d):
    """The namespaces an object is in or names: its own; for node mode's cluster-scoped objects,
    the ServiceAccount's they name (the RBAC binding's subject, the admission policy's user by a
    literal namespace: none when it holds the ServiceAccount of any namespace, as it does)."""
    if d["kind"] == "Namespace":
        return {d["metadata"]["name"]}
    if d["kind"] == "ClusterRoleBinding":
        return {s.get("namespace") for s in d.get("subjects", [])}
    if d["kind"] == "ValidatingAdmissionPolicy":
        return set(re.findall(r"system:serviceaccount:([a-z0-9][-a-z0-9]*):", json.dumps(d["spec"])))
    if d["kind"] in UNNAMESPACED:
        return set()
    return {d["metadata"].get("namespace")}


def render(root, argv):
    out = subprocess.run([str(HELM), *argv], cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"helm {' '.join(argv)}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def service_accounts(docs):
    """The ServiceAccounts a render creates, and those its workloads run as."""
    made = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    used = {d["spec"]["template"]["spec"].get("serviceAccountName") for d in docs if d["kind"] in WORKLOADS}
    return made, used


def flag(argv, *names):
    for i, a in enumerate(argv):
        if a in names and i + 1 < len(argv):
            return argv[i + 1]
        for n in names:
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def failures_of(root):
    failures = []

    def check(ok, why):
        if not ok:
            failures.append(why)

    want = module_defaults(root)
    sa, ns = want.get("service_account"), want.get("namespace")
    check(bool(sa) and bool(ns), f"deploy/terraform/variables.tf gives service_account and namespace defaults (has {want})")

    # The chart: its value, and what it renders under the README's release name and another.
    values = yaml.safe_load((root / "charts/eipool/values.yaml").read_text())
    check(values["serviceAccount"]["name"] == sa,
          f"charts/eipool/values.yaml serviceAccount.name is the module's service_account {sa!r} "
          f"(has {values['serviceAccount']['name']!r})")
    for release in ("eipool", "media"):
        made, used = service_accounts(render(root, ["template", release, "charts/eipool", "--set", "mediaExample.enabled=true"]))
        check(made == {sa} and used == {sa},
              f"the chart's default render as release {release!r} makes and uses ServiceAccount {sa!r} "
              f"(makes {sorted(made)}, uses {sorted(map(str, used))})")
    # Node mode: the DaemonSet runs as the same ServiceAccount (the one the module trusts); its
    # media example as none of eipool's (no role).
    made, used = service_accounts(render(root, ["template", "media", "charts/eipool", "--set", "mode=node",
                                                "--set", "node.mediaExample.enabled=true"]))
    check(made == {sa} and used == {sa, None},
          f"the chart's node-mode render makes ServiceAccount {sa!r} and runs the DaemonSet as it, the media example as none "
          f"(makes {sorted(made)}, uses {sorted(map(str, used))})")

    # The README's helm install, as written.
    argv = readme_helm_install(root)
    check(argv is not None, "README.md has a ```sh block with the `helm install` of a first deploy")
    if argv is not None:
        made, used = service_accounts(render(root, argv))
        check(made == {sa} and used == {sa},
              f"the README's helm install makes and uses ServiceAccount {sa!r}, the module's default "
              f"(makes {sorted(made)}, uses {sorted(map(str, used))})")
        check(flag(argv, "-n", "--namespace") == ns,
              f"the README's helm install goes to the module's namespace {ns!r} (has {flag(argv, '-n', '--namespace')!r})")
        check(not any("mediaExample.enabled=true" in a for a in argv),
              "the README's helm install does not turn on mediaExample: its placeholder image would claim addresses, "
              "never start (ImagePullBackOff) and keep other media pods off those nodes (the anti-affinity)")
        labels = [(d["kind"], (d["metadata"].get("labels") or {}).get("release")) for d in render(root, argv + OPERATOR)
                  if d["kind"] in ("PodMonitor", "PrometheusRule")]
        check(len(labels) == 2 and all(r for _, r in labels),
              "the README's helm install labels the PodMonitor and the PrometheusRule release: <kube-prometheus-stack's "
              f"release> (monitoring.labels.release), the label its Prometheus selects them by (has {labels})")
        commands = readme_commands(root)
        made = next((i for i, c in enumerate(commands) if c[:3] == ["kubectl", "create", "namespace"] and ns in c), None)
        secret = next((i for i, c in enumerate(commands) if "secret" in c and "create" in c), None)
        check(secret is None or made is not None and made < secret,
              f"the README's first deploy creates the namespace {ns!r} (kubectl create namespace) before the Secret in it")

    # kustomize: the base's ServiceAccount and what its workloads run as; the overlay's namespace.
    base = root / "deploy/base"
    made = {d["metadata"]["name"] for d in yaml.safe_load_all((base / "serviceaccount.yaml").read_text()) if d}
    used = {d["spec"]["template"]["spec"].get("serviceAccountName")
            for f in sorted(base.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d and d.get("kind") in WORKLOADS}
    check(made == {sa} and used == {sa},
          f"deploy/base makes and uses ServiceAccount {sa!r} (makes {sorted(made)}, uses {sorted(map(str, used))})")
    try:
        made, used = service_accounts(kustomize(root, root / "deploy/overlays/node"))
    except RuntimeError as e:
        made, used = {f"(no render: {e})"}, set()
    check(made == {sa} and used == {sa, None},
          f"deploy/overlays/node runs its DaemonSet as ServiceAccount {sa!r}, the media example as none "
          f"(makes {sorted(made)}, uses {sorted(map(str, used))})")
    overlay = yaml.safe_load((root / "deploy/overlays/example/kustomization.yaml").read_text())
    check(overlay.get("namespace") == ns, f"deploy/overlays/example's namespace is the module's {ns!r} (has {overlay.get('namespace')!r})")
    # Every overlay follows the example's namespace, whatever the user sets there: one that sets
    # its own moves the pods away from the namespace the role trusts (exit 77).
    for o, spaces in namespaces_when_moved(root).items():
        check(spaces == {MOVED}, f"deploy/overlays/{o} follows the example overlay's namespace: with it set to {MOVED!r}, "
                                 f"its objects are in {sorted(map(str, spaces))}")
    secrets = [d["metadata"]["name"] for d in kustomize(root, root / "deploy/overlays/example") if d["kind"] == "Secret"]
    check(not secrets, f"deploy/overlays/example makes no Secret (it would overwrite the Redis URL you manage, e.g. with one "
                       f"without credentials): makes {secrets}")

    # The module's examples pass the same (or leave the defaults).
    tg = hcl2.loads((root / "deploy/terraform/examples/terragrunt/terragrunt.hcl").read_text())
    inputs = {unq(k): unq(v) for k, v in (tg.get("inputs") or {}).items()}
    readme = (root / "deploy/terraform/README.md").read_text()
    for where, got in [("the Terragrunt example", inputs),
                       ("deploy/terraform/README.md's example",
                        {k: v for k, v in re.findall(r'^\s*(service_account|namespace)\s*=\s*"([^"]*)"', readme, re.M)})]:
        for key, default in (("service_account", sa), ("namespace", ns)):
            check(got.get(key, default) == default, f"{where} passes {key} = {got.get(key)!r}, not the default {default!r}")
    return failures


# Known ways the defaults drift apart: (file, old, new), each caught by a failure mentioning the
# last string.
BREAKS = [
    ("the chart's ServiceAccount back to the release's full name",
     ("charts/eipool/values.yaml", "  name: eipool\n", '  name: ""\n'), "serviceAccount.name"),
    ("the module's default changed alone",
     ("deploy/terraform/variables.tf", 'default     = "eipool"', 'default     = "eipool-media"'), "serviceAccount.name"),
    ("the README's helm install naming another ServiceAccount",
     ("README.md", "helm install eipool charts/eipool -n media \\\n",
      "helm install eipool charts/eipool -n media \\\n  --set serviceAccount.name=media \\\n"), "the README's helm install makes"),
    ("the README's helm install in another namespace",
     ("README.md", "helm install eipool charts/eipool -n media \\\n", "helm install eipool charts/eipool -n streaming \\\n"),
     "the module's namespace"),
    ("an overlay that sets its own namespace",
     ("deploy/overlays/trial/kustomization.yaml", "resources:\n", "namespace: media\nresources:\n"),
     "deploy/overlays/trial follows the example overlay's namespace"),
    ("the Operator's objects outside the example's namespace",
     ("deploy/components/prometheus-operator/kustomization.yaml", "fieldPaths: [metadata.namespace]", "fieldPaths: [metadata.labels.ns]"),
     "deploy/overlays/prometheus-operator follows"),
    ("node mode's admission policy holding one namespace's ServiceAccount",
     ("deploy/components/node-mode/admission-policy.yaml",
      "expression: \"request.userInfo.username.matches('^system:serviceaccount:[^:]+:[^:]*eipool[^:]*$')\"",
      "expression: \"request.userInfo.username == 'system:serviceaccount:default:eipool'\""),
     "deploy/overlays/node follows"),
    ("node mode's DaemonSet under a ServiceAccount of its own",
     ("deploy/components/node-mode/daemonset.yaml", "serviceAccountName: eipool\n", "serviceAccountName: eipool-node\n"),
     "deploy/overlays/node runs its DaemonSet"),
    ("the chart's node mode under a ServiceAccount of its own",
     ("charts/eipool/templates/node-mode.yaml", '{{- $sa := include "eipool.serviceAccountName" . }}', '{{- $sa := "eipool-node" }}'),
     "the chart's node-mode render"),
    ("the example overlay making the Redis Secret",
     ("deploy/overlays/example/kustomization.yaml", "images:\n",
      "secretGenerator:\n  - name: eipool-redis\n    literals: [url=rediss://redis.example.com:6379]\n"
      "    options: {disableNameSuffixHash: true}\nimages:\n"), "makes no Secret"),
    ("the README's helm install with the example workload",
     ("README.md", "helm install eipool charts/eipool -n media \\\n",
      "helm install eipool charts/eipool -n media \\\n  --set mediaExample.enabled=true \\\n"), "does not turn on mediaExample"),
    ("the README's helm install without the label kube-prometheus-stack selects",
     ("README.md", "  --set monitoring.labels.release=kube-prometheus-stack \\\n", ""), "labels the PodMonitor"),
    ("the README's Secret before its namespace", ("README.md", "kubectl create namespace media\n", ""), "before the Secret"),
    ("the kustomize base's ServiceAccount renamed",
     ("deploy/base/serviceaccount.yaml", "  name: eipool\n", "  name: eipool-media\n"), "deploy/base makes"),
    ("the Terragrunt example passing another ServiceAccount",
     ("deploy/terraform/examples/terragrunt/terragrunt.hcl", 'service_account   = "eipool"', 'service_account   = "media"'),
     "the Terragrunt example"),
]


def self_test():
    assert not failures_of(ROOT), f"the repository must pass before it is broken: {failures_of(ROOT)}"
    missed = []
    for what, (rel, old, new), caught_by in BREAKS:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            shutil.copy(ROOT / "README.md", root / "README.md")
            shutil.copytree(ROOT / "charts", root / "charts")
            shutil.copytree(ROOT / "deploy", root / "deploy")
            path = root / rel
            text = path.read_text()
            assert old in text, f"self-test break {what!r}: {old!r} is no longer in {rel}; update BREAKS"
            path.write_text(text.replace(old, new, 1))
            found = failures_of(root)
            if not any(caught_by in f for f in found):
                missed.append(f"{what}: not caught (expected a failure mentioning {caught_by!r}; got {found})")
    return missed


def main(argv):
    if argv[:1] == ["--self-test"]:
        missed = self_test()
        if missed:
            print("check_defaults --self-test:", *missed, sep="\n  - ", file=sys.stderr)
        return 1 if missed else 0
    failures = failures_of(ROOT)
    if failures:
        print("check_defaults: one ServiceAccount and namespace everywhere:", *failures, sep="\n  - ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
