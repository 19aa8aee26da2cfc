"""Every repository path the deploy files, the chart and the docs name exists: a comment or a
NOTES line that sends the reader to a file that is not there (as deploy/prometheus/scrape-config.yaml
was, for deploy/prometheus/prometheus.yml) is a dead end on a first deploy.

    check_paths.py              check
    check_paths.py --self-test  name a missing file in a copy and show it caught
"""
import glob
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A path under one of the repository's top folders, also as a relative link (../deploy/...); a glob
# (deploy/iam/*.json) counts when it matches something; brace lists are prose, not paths.
PATH = re.compile(r"(?<![\w./-])((?:\.\./)*(?:deploy|charts|docs|scripts|crates)/[A-Za-z0-9_.*/-]*[A-Za-z0-9_*/])")


def read_by(root):
    """The files whose paths are checked: the README, ARCHITECTURE.md and docs, everything under
    deploy/ and charts/ (the dashboard JSON aside) and the check scripts (this one aside: it names
    a missing file on purpose)."""
    files = [root / "README.md", root / "ARCHITECTURE.md", *sorted((root / "docs").glob("*.md")),
             *sorted(p for p in (root / "deploy").rglob("*") if p.is_file()),
             *sorted(p for p in (root / "charts").rglob("*") if p.is_file() and p.suffix != ".json"),
             *sorted((root / "scripts").glob("check*"))]
    return [f for f in files if f.is_file() and f.name != "check_paths.py"]


def failures_of(root):
    missing = {}
    for f in read_by(root):
        try:
            text = f.read_text()
        except UnicodeDecodeError:
            continue
        for m in PATH.finditer(text):
            ref = m[1]
            if "{" in ref:
                continue
            rel = re.sub(r"^(\.\./)+", "", ref).rstrip("/")
            if not glob.glob(str(root / rel)):
                missing.setdefault(ref, set()).add(str(f.relative_to(root)))
    return [f"{ref} (named in {', '.join(sorted(where))}) does not exist" for ref, where in sorted(missing.items())]


def self_test():
    assert not failures_of(ROOT), f"the repository must pass before it is broken: {failures_of(ROOT)}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("README.md", "ARCHITECTURE.md"):
            shutil.copy(ROOT / name, root / name)
        for folder in ("docs", "deploy", "charts", "scripts"):
            shutil.copytree(ROOT / folder, root / folder)
        shutil.copytree(ROOT / "crates", root / "crates", ignore=shutil.ignore_patterns("target"))
        values = root / "charts/eipool/values.yaml"
        values.write_text(values.read_text() + "# scrape with deploy/prometheus/scrape-config.yaml\n")
        found = failures_of(root)
    if not any("deploy/prometheus/scrape-config.yaml" in f for f in found):
        return [f"a comment naming a missing file: not caught (got {found})"]
    return []


def main(argv):
    if argv[:1] == ["--self-test"]:
        missed = self_test()
        if missed:
            print("check_paths --self-test:", *missed, sep="\n  - ", file=sys.stderr)
        return 1 if missed else 0
    failures = failures_of(ROOT)
    if failures:
        print("check_paths: paths named in the docs, deploy/ and charts/:", *failures, sep="\n  - ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
