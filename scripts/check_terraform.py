"""deploy/terraform, checked offline: no Terraform binary is reachable here, so this parses every
.tf and .hcl file with a real HCL parser (python-hcl2) and checks what the module promises on the
parsed text. checkov's scan runs beside it (scripts/check-deploy).

    check_terraform.py              check deploy/terraform against deploy/iam
    check_terraform.py --self-test  break a copy in known ways and show each break is caught

The policies have one source: deploy/iam/node.json and operator.json. The module keeps
byte-for-byte copies in its own folder (deploy/terraform/policies/), because it must read nothing
outside it: tfmod, a module registry or a plain copy pack only the module's folder. This checks
the copies against deploy/iam, that every file the module reads is inside its folder (and that the
folder packed alone passes every other check), evaluates the policy expression in Python for
another pool and proves the result equal to the JSON file with only the pool-tag conditions
changed, and that the roles get no other permission.
"""
import copy
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "deploy" / "terraform"
IAM = ROOT / "deploy" / "iam"
EXAMPLE_POOL = "media-prod"
# The one expression the module may use to make a role's policy from policies/<role>.json (the
# copy of deploy/iam/<role>.json in the module's folder).
POLICY_EXPR = re.compile(
    r'^\$\{replace\(file\("\$\{path\.module\}/policies/(?P<file>[a-z]+)\.json"\), "\\"media-prod\\"", jsonencode\(var\.pool_name\)\)\}$'
)
# Terraform's functions that read a file, and a module call's local source: what could reach
# outside the module's folder.
READS = re.compile(r'\b(?:file|filebase64|fileexists|fileset|filemd5|filesha1|filesha256|filesha512|'
                   r'filebase64sha256|filebase64sha512|templatefile)\(\s*"([^"]*)"|\bsource\s*=\s*"(\.[^"]*)"')
# Every way Terraform can give an IAM principal a permission.
GRANTS = {"aws_iam_role_policy", "aws_iam_policy", "aws_iam_role_policy_attachment", "aws_iam_policy_attachment",
          "aws_iam_user_policy", "aws_iam_group_policy", "aws_iam_role_policies_exclusive",
          "aws_iam_role_policy_attachments_exclusive"}
SKIP = re.compile(r"#\s*checkov:skip=([^\s:]*)(?::(.*))?")


def unq(s):
    """python-hcl2 keeps string literals quoted ("\"vpc\""), keys too; drop one level."""
    return s[1:-1] if isinstance(s, str) and len(s) >= 2 and s[0] == s[-1] == '"' else s


def norm(v):
    if isinstance(v, dict):
        return {unq(k): norm(x) for k, x in v.items() if k not in ("__comments__", "__is_block__")}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return unq(v)


def parse(module):
    """Every .tf/.hcl file under `module` parsed: {relative path: document}, and parse failures."""
    docs, failures = {}, []
    for path in sorted(p for p in module.rglob("*") if p.suffix in (".tf", ".hcl")):
        rel = path.relative_to(module)
        try:
            docs[str(rel)] = norm(hcl2.loads(path.read_text()))
        except Exception as e:  # the parser raises several types; each is a failure to report
            failures.append(f"{rel}: cannot parse as HCL: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    return docs, failures


def blocks(docs, kind):
    """(type, name, body) of every `resource` or `data` block of the module's .tf files."""
    for rel, doc in docs.items():
        if rel.endswith(".tf") and "/" not in rel:
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        yield rtype, name, body


def module_locals(docs):
    out = {}
    for rel, doc in docs.items():
        if rel.endswith(".tf") and "/" not in rel:
            for entry in doc.get("locals", []):
                out.update(entry)
    return out


def with_pool(policy, pool):
    """The JSON policy with the pool-tag conditions naming `pool` instead of the example's."""
    policy = copy.deepcopy(policy)
    for st in policy["Statement"]:
        for op, conds in st.get("Condition", {}).items():
            for key, value in conds.items():
                if key.endswith("Tag/eipool:pool") and value == EXAMPLE_POOL:
                    conds[key] = pool
    return policy


def first_difference(a, b, where="policy"):
    if type(a) is not type(b):
        return f"{where}: {a!r} vs {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}.{k}: only in {'the module' if k in a else 'the JSON file'}"
            d = first_difference(a[k], b[k], f"{where}.{k}")
            if d:
                return d
    elif isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
    elif a != b:
        return f"{where}: {a!r} vs {b!r}"
    return None


def outside_reads(module):
    """Paths the module's .tf files read (or call as a local module) that are not inside its folder."""
    out = []
    for path in sorted(module.glob("*.tf")):
        text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        for m in READS.finditer(text):
            arg = m[1] if m[1] is not None else m[2]
            rel = arg.removeprefix("${path.module}/")
            inside = (arg.startswith("${path.module}/") and ".." not in rel.split("/") and "${" not in rel
                      and (module / rel).exists())
            if not inside:
                out.append(f"{path.name}: {arg!r}")
    return out


def failures_of(module, iam=None):
    """Every failure of the module at `module`; with `iam`, its policy copies are compared with
    that folder's JSON files (the single source)."""
    docs, failures = parse(module)
    if failures:
        return failures

    def check(ok, why):
        if not ok:
            failures.append(why)

    # Self-contained: every file it reads is in its folder (packed alone, it still works).
    for read in outside_reads(module):
        check(False, f"the module reads only files inside its folder (tfmod and registries pack the folder alone): {read}")
    # One source: the copies are deploy/iam's files, byte for byte.
    if iam is not None:
        for role in ("node", "operator"):
            copy_, source = module / "policies" / f"{role}.json", iam / f"{role}.json"
            check(copy_.is_file() and copy_.read_bytes() == source.read_bytes(),
                  f"policies/{role}.json is deploy/iam/{role}.json byte-for-byte "
                  f"(cp deploy/iam/{role}.json deploy/terraform/policies/)")

    res = {(t, n): b for t, n, b in blocks(docs, "resource")}
    loc = module_locals(docs)

    # The roles' permissions: exactly the two inline policies, each from its JSON file.
    grants = sorted(f"{t}.{n}" for t, n in res if t in GRANTS)
    grants += [f"data.{t}.{n}" for t, n, _ in blocks(docs, "data") if t == "aws_iam_policy_document"]
    grants += [f"aws_iam_role.{n}.{k}" for (t, n), b in res.items() if t == "aws_iam_role"
               for k in ("inline_policy", "managed_policy_arns") if k in b]
    check(grants == ["aws_iam_role_policy.node", "aws_iam_role_policy.operator"],
          f"the roles get exactly policies/node.json and operator.json (deploy/iam's), and no policies other than those: found {grants}")
    for role, role_ref in [("node", "${aws_iam_role.node.id}"), ("operator", "${aws_iam_role.operator[0].id}")]:
        body = res.get(("aws_iam_role_policy", role), {})
        check(body.get("role") == role_ref, f"the {role} policy is attached to the {role} role ({role_ref})")
        check(body.get("policy") == f"${{local.{role}_policy}}", f"the {role} policy is local.{role}_policy")
        m = POLICY_EXPR.match(str(loc.get(f"{role}_policy", "")))
        check(bool(m) and m["file"] == role,
              f"local.{role}_policy reads policies/{role}.json: replace(file(\"${{path.module}}/policies/{role}.json\"), "
              f"\"\\\"{EXAMPLE_POOL}\\\"\", jsonencode(var.pool_name)); found {loc.get(f'{role}_policy')!r}")
        if not m:
            continue
        policy_file = module / "policies" / f"{m['file']}.json"
        if not policy_file.is_file():
            continue  # reported above as a read outside the folder or a missing file
        text = policy_file.read_text()
        for pool in ("media-staging", "a.b_c-1"):
            # What Terraform computes, for another pool.
            made = json.loads(text.replace(f'"{EXAMPLE_POOL}"', json.dumps(pool)))
            diff = first_difference(made, with_pool(json.loads(text), pool))
            check(diff is None, f"the module's {role} policy for pool {pool!r} is policies/{role}.json with only the "
                                f"pool-tag conditions changed: differs at {diff}")

    # The node role's trust: IRSA for one ServiceAccount, or EKS Pod Identity.
    check(res.get(("aws_iam_role", "node"), {}).get("assume_role_policy") == "${jsonencode(local.node_trust[var.node_trust])}",
          "the node role trusts local.node_trust[var.node_trust]")
    trust = loc.get("node_trust", {})
    # Exactly one statement in each: a second one is read by nobody here and can trust anything
    # (e.g. sub = system:serviceaccount:*).
    for kind in ("irsa", "pod_identity"):
        count = len(trust.get(kind, {}).get("Statement") or [])
        check(count == 1, f"the {kind} trust has exactly one statement (has {count}): every statement trusts someone")
    irsa = (trust.get("irsa", {}).get("Statement") or [{}])[0]
    conds = irsa.get("Condition", {}).get("StringEquals", {})
    check(irsa.get("Action") == "sts:AssumeRoleWithWebIdentity" and irsa.get("Principal", {}).get("Federated") == "${var.oidc_provider_arn}",
          "the IRSA trust is sts:AssumeRoleWithWebIdentity from the cluster's OIDC provider")
    check(conds.get("${local.oidc_host}:sub") == "system:serviceaccount:${var.namespace}:${var.service_account}",
          "the IRSA trust is limited to the media pods' ServiceAccount (the :sub condition)")
    check(conds.get("${local.oidc_host}:aud") == "sts.amazonaws.com", "the IRSA trust requires the STS audience (:aud)")
    pod = (trust.get("pod_identity", {}).get("Statement") or [{}])[0]
    check(pod.get("Principal", {}).get("Service") == "pods.eks.amazonaws.com"
          and sorted(pod.get("Action", [])) == ["sts:AssumeRole", "sts:TagSession"],
          "the Pod Identity trust is pods.eks.amazonaws.com with sts:AssumeRole and sts:TagSession")
    # EKS Pod Identity assumes the role for any association in the account naming it; its session
    # tags say whose pod: the trust takes this cluster's, namespace's and ServiceAccount's only.
    pod_conds = pod.get("Condition", {})
    want = {"aws:RequestTag/eks-cluster-arn": "${one(data.aws_eks_cluster.pod_identity[*].arn)}",
            "aws:RequestTag/kubernetes-namespace": "${var.namespace}",
            "aws:RequestTag/kubernetes-service-account": "${var.service_account}"}
    check(pod_conds == {"StringEquals": want},
          "the Pod Identity trust is limited to the cluster, namespace and ServiceAccount of the media pods (StringEquals on "
          f"the request tags eks-cluster-arn, kubernetes-namespace, kubernetes-service-account; has {pod_conds})")
    cluster = next((b for t, n, b in blocks(docs, "data") if (t, n) == ("aws_eks_cluster", "pod_identity")), {})
    check(cluster.get("name") == "${var.cluster_name}" and cluster.get("count") == '${var.node_trust == "pod_identity" ? 1 : 0}',
          "data.aws_eks_cluster.pod_identity reads var.cluster_name, with Pod Identity only")
    check(res.get(("aws_eks_pod_identity_association", "node"), {}).get("role_arn") == "${aws_iam_role.node.arn}",
          "with Pod Identity, the module associates the node role with the ServiceAccount")

    # The pool: tagged addresses; published ones cannot be destroyed; the holder tag is eipool's.
    check("\"eipool:pool\" = var.pool_name" in str(loc.get("pool_tags")), "local.pool_tags sets eipool:pool to the pool's name")
    for name in ("published", "unpublished"):
        eip = res.get(("aws_eip", name), {})
        life = (eip.get("lifecycle") or [{}])[0]
        check(str(eip.get("tags", "")).startswith("${merge(local.pool_tags"), f"aws_eip.{name} carries the pool's tag")
        check(eip.get("domain") == "vpc", f"aws_eip.{name} is a VPC address")
        check(eip.get("ipam_pool_id") == "${var.ipam_pool_id}" and eip.get("public_ipv4_pool") == "${var.public_ipv4_pool}",
              f"aws_eip.{name} can come from an IPAM or BYOIP pool")
        check('${tags["eipool:holder"]}' in life.get("ignore_changes", []),
              f"aws_eip.{name} ignores the eipool:holder tag eipool writes")
        check((life.get("prevent_destroy") is True) == (name == "published"),
              f"aws_eip.{name}: prevent_destroy is {'on' if name == 'published' else 'off'}")

    outputs = {k for rel, doc in docs.items() if "/" not in rel for o in doc.get("output", []) for k in o}
    for name in ("node_role_arn", "operator_role_arn", "addresses", "cidrs", "helm_values"):
        check(name in outputs, f"output {name} is there")

    # Every checkov skip says why.
    for path in sorted(p for p in module.rglob("*") if p.suffix in (".tf", ".hcl")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = SKIP.search(line)
            if m:
                check(re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", m[1] or "") and (m[2] or "").strip(),
                      f"{path.relative_to(module)}:{n}: a checkov skip names its check and gives a reason (#checkov:skip=ID:reason)")
    return failures


# Known ways to break the module or its single source, each with (part of) the failure it must
# give. Each edits (file, old, new) in a copy of deploy/terraform and deploy/iam.
BREAKS = [
    ("the node role given the operator's policy", ("terraform/main.tf", "/policies/node.json", "/policies/operator.json"), "reads policies/node.json"),
    ("a policy attached beside the JSON files",
     ("terraform/main.tf", "# --- The operator role",
      'resource "aws_iam_role_policy_attachment" "extra" {\n  role       = aws_iam_role.node.id\n'
      '  policy_arn = "arn:aws:iam::aws:policy/AmazonEC2FullAccess"\n}\n\n# --- The operator role'),
     "no policies other than"),
    ("a statement written in the module", ("terraform/main.tf", "  policy = local.node_policy", '  policy = jsonencode({Statement = []})'),
     "local.node_policy"),
    ("the pool name outside a tag condition of the JSON", ("terraform/policies/node.json", '"ReadThePoolAndThisNode"', '"media-prod"'),
     "differs at"),
    ("the module's copy of a policy drifting from deploy/iam",
     ("iam/operator.json", '"ShrinkOnlyPoolAddresses"', '"ShrinkPoolAddresses"'), "byte-for-byte"),
    ("the module reading outside its folder (as it once read ../iam)",
     ("terraform/main.tf", "${path.module}/policies/node.json", "${path.module}/../iam/node.json"), "inside its folder"),
    ("a local submodule outside the folder",
     ("terraform/main.tf", "# --- The pool", 'module "x" {\n  source = "../iam"\n}\n\n# --- The pool'), "inside its folder"),
    ("published addresses that Terraform may release", ("terraform/main.tf", "prevent_destroy = true", "prevent_destroy = false"),
     "prevent_destroy is on"),
    ("an IRSA trust for every ServiceAccount",
     ("terraform/main.tf", '"${local.oidc_host}:sub" = "system:serviceaccount:${var.namespace}:${var.service_account}"',
      '"${local.oidc_host}:sub" = "system:serviceaccount:*"'), ":sub condition"),
    ("a second IRSA statement trusting every ServiceAccount",
     ("terraform/main.tf", "        }\n      }]\n    }\n    # EKS Pod Identity",
      "        }\n      }, {\n        Effect    = \"Allow\"\n        Principal = { Federated = var.oidc_provider_arn }\n"
      "        Action    = \"sts:AssumeRoleWithWebIdentity\"\n"
      "        Condition = { StringLike = { \"${local.oidc_host}:sub\" = \"system:serviceaccount:*\" } }\n"
      "      }]\n    }\n    # EKS Pod Identity"),
     "irsa trust has exactly one statement"),
    ("a Pod Identity trust without conditions (any association in the account)",
     ("terraform/main.tf", "        Condition = {\n          StringEquals = {\n            \"aws:RequestTag",
      "        Ignored = {\n          StringEquals = {\n            \"aws:RequestTag"),
     "limited to the cluster, namespace and ServiceAccount"),
    ("a Pod Identity trust for any namespace",
     ("terraform/main.tf", '"aws:RequestTag/kubernetes-namespace"       = var.namespace',
      '"aws:RequestTag/kubernetes-namespace"       = "*"'), "limited to the cluster, namespace"),
    ("Terraform removing the holder tag eipool writes", ("terraform/main.tf", 'ignore_changes = [tags["eipool:holder"]]', "ignore_changes = []"),
     "eipool:holder"),
    ("a checkov skip without a reason", ("terraform/main.tf", "#checkov:skip=CKV2_AWS_19:eipool associates", "#checkov:skip=CKV2_AWS_19\n  #"),
     "gives a reason"),
    ("a file that is not HCL", ("terraform/examples/terragrunt/terragrunt.hcl", "inputs = {", "inputs = {{"), "cannot parse"),
]


def packed_alone():
    """The module's folder copied alone, as tfmod or a registry packs it: every check but the
    comparison with deploy/iam (which is not there) must pass."""
    with tempfile.TemporaryDirectory() as tmp:
        alone = Path(tmp) / "module"
        shutil.copytree(MODULE, alone)
        return failures_of(alone)


def self_test():
    assert not failures_of(MODULE, IAM), f"deploy/terraform must pass before it is broken: {failures_of(MODULE, IAM)}"
    missed = []
    for what, (rel, old, new), caught_by in BREAKS:
        with tempfile.TemporaryDirectory() as tmp:
            deploy = Path(tmp) / "deploy"
            shutil.copytree(MODULE, deploy / "terraform")
            shutil.copytree(IAM, deploy / "iam")
            path = deploy / rel
            text = path.read_text()
            assert old in text, f"self-test break {what!r}: {old!r} is no longer in {rel}; update BREAKS"
            path.write_text(text.replace(old, new, 1))
            found = failures_of(deploy / "terraform", deploy / "iam")
            if not any(caught_by in f for f in found):
                missed.append(f"{what}: not caught (expected a failure mentioning {caught_by!r}; got {found})")
    return missed


def main(argv):
    if argv[:1] == ["--self-test"]:
        missed = self_test()
        if missed:
            print("check_terraform --self-test:", *missed, sep="\n  - ", file=sys.stderr)
        return 1 if missed else 0
    failures = failures_of(MODULE, IAM) + [f"packed alone: {f}" for f in packed_alone()]
    if failures:
        print("check_terraform: deploy/terraform:", *failures, sep="\n  - ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
