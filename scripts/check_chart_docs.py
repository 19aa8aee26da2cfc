"""The Helm chart's values, documented: every key of charts/eipool/values.yaml has a comment above
it, and docs/helm.md's values reference lists exactly the chart's settings with their defaults.

    check_chart_docs.py [--self-test]

--self-test: a docs/helm.md row with a wrong default, a missing row, a row for a key the chart does not
have, and an undocumented key in values.yaml are each caught.
"""
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
VALUES = ROOT / "charts" / "eipool" / "values.yaml"
README = ROOT / "docs" / "helm.md"  # its "## Values" table
# Maps given as a whole (their inner keys are Kubernetes', not the chart's).
WHOLE = {"resources", "annotations", "labels", "extraEnv", "startupProbe", "nodeSelector"}


def leaves(d, prefix=""):
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in WHOLE:
            yield from leaves(v, path + ".")
        else:
            yield path, v


def undocumented(text):
    """Keys of values.yaml without a comment right above them (inner keys of WHOLE maps exempt)."""
    out, whole_indent, prev = [], None, ""
    for line in text.splitlines():
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
        if m:
            indent = len(m.group(1))
            if whole_indent is not None and indent > whole_indent:
                prev = line
                continue
            whole_indent = indent if m.group(2) in WHOLE else None
            if not prev.strip().startswith("#"):
                out.append(m.group(2))
        if line.strip():
            prev = line
    return out


def readme_rows(text):
    """(key, default) of docs/helm.md's values table: rows `| `key` | `default` | meaning |`."""
    section = text.split("## Values", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-zA-Z0-9_.]+)` \| `(.*?)` \|", section, re.M)}


def shown(v):
    return json.dumps(v, separators=(",", ":"))


def problems(values_text, readme_text):
    values = dict(leaves(yaml.safe_load(values_text)))
    rows = readme_rows(readme_text)
    out = [f"values.yaml: {k} has no comment above it" for k in undocumented(values_text)]
    for k, v in values.items():
        if k not in rows:
            out.append(f"docs/helm.md: no row for {k} (default {shown(v)})")
        elif rows[k] != shown(v):
            out.append(f"docs/helm.md: {k} default is `{rows[k]}`, the chart's is `{shown(v)}`")
    out += [f"docs/helm.md: row for {k}, which the chart does not have" for k in rows if k not in values]
    return out


def self_test(values_text, readme_text):
    rows = readme_rows(readme_text)
    key, default = next(iter(rows.items()))
    breaks = [
        ("a wrong default", values_text, readme_text.replace(f"| `{key}` | `{default}` |", f"| `{key}` | `{default}x` |", 1)),
        ("a missing row", values_text, readme_text.replace(f"| `{key}` | `{default}` |", "| x |", 1)),
        ("a row for no key", values_text, readme_text.replace(f"| `{key}` |", f"| `{key}` | `1` | x |\n| `nosuch.key` |", 1)),
        # Listed in docs/helm.md, but without its comment in values.yaml.
        ("an undocumented key", values_text + "\nundocumentedKey: 1\n",
         readme_text.replace(f"| `{key}` |", f"| `undocumentedKey` | `1` | x |\n| `{key}` |", 1)),
    ]
    return [what for what, v, r in breaks if not problems(v, r)]


def main(argv):
    values_text, readme_text = VALUES.read_text(), README.read_text()
    if argv[:1] == ["--self-test"]:
        missed = self_test(values_text, readme_text)
        for m in missed:
            print(f"check_chart_docs --self-test: {m} was not caught", file=sys.stderr)
        return 1 if missed else 0
    found = problems(values_text, readme_text)
    for p in found:
        print(f"check_chart_docs: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
