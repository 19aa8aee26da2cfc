"""A release the docs can point at. Every entry of CHANGELOG.md (a `###` heading and its text)
names at least one commit of this repository, and each commit it names exists; every `ref=` that
the docs and examples pin in a Terraform module source is a tag or commit of this repository, at
which deploy/terraform reads nothing outside its folder (a pin that does not exist, such as a tag
never made, fails `terraform init` for whoever copies it).

    check_release_refs.py              check
    check_release_refs.py --self-test  break a copy of the documents in known ways and show each caught
"""
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_terraform  # noqa: E402  (the module's own check of reads outside its folder)

ROOT = Path(__file__).resolve().parent.parent
# Where a Terraform source with a ref= can be written.
PINNED = ["README.md", "docs/*.md", "deploy/terraform/README.md", "deploy/terraform/examples/**/*.hcl",
          "deploy/terraform/examples/**/*.md"]
COMMIT = re.compile(r"`([0-9a-f]{7,40})`")
REF = re.compile(r"[?&]ref=([^\"'\s)&]+)")


def git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)


def commit_of(name):
    """The commit `name` (a tag, branch or commit id) resolves to here, or None."""
    out = git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
    return out.stdout.decode().strip() if out.returncode == 0 else None


def module_reads_outside_at(commit):
    """What deploy/terraform reads outside its folder at `commit` (None: no module there)."""
    out = git("archive", "--format=tar", commit, "deploy/terraform")
    if out.returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(out.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        return check_terraform.outside_reads(Path(tmp) / "deploy" / "terraform")


def changelog_entries(text):
    """(heading, body) of every `###` entry."""
    parts = re.split(r"^### ", text, flags=re.M)[1:]
    return [(p.split("\n", 1)[0], p.split("\n", 1)[1] if "\n" in p else "") for p in parts]


def failures_of(root):
    failures = []

    def check(ok, why):
        if not ok:
            failures.append(why)

    entries = changelog_entries((root / "CHANGELOG.md").read_text())
    check(bool(entries), "CHANGELOG.md has entries (### headings)")
    for heading, body in entries:
        commits = COMMIT.findall(heading + "\n" + body)
        check(bool(commits), f"CHANGELOG.md entry {heading!r} names its commit(s) (`0123abc`)")
        for c in commits:
            check(commit_of(c) is not None, f"CHANGELOG.md entry {heading!r} names {c}, which is no commit of this repository")
    for pattern in PINNED:
        for path in sorted(root.glob(pattern)):
            for ref in REF.findall(path.read_text()):
                rel = path.relative_to(root)
                commit = commit_of(ref)
                check(commit is not None, f"{rel} pins ref={ref}, which is no tag or commit of this repository "
                                          "(pin one that exists: a release tag once made, else a commit)")
                if commit is None:
                    continue
                outside = module_reads_outside_at(commit)
                check(outside == [], f"{rel} pins ref={ref}, where deploy/terraform "
                                     + ("does not exist" if outside is None else f"reads outside its folder: {outside}"))
    return failures


def _first_entry_without_commits(text):
    head, first, rest = re.split(r"(^### .*\n(?:(?!### ).*\n?)*)", text, maxsplit=1, flags=re.M)
    return head + COMMIT.sub("", first) + rest


# Known breaks of the documents: (what, file, edit, part of the failure that must catch it).
BREAKS = [
    ("a CHANGELOG entry without its commit", "CHANGELOG.md", _first_entry_without_commits, "names its commit"),
    ("a CHANGELOG entry naming a commit that does not exist", "CHANGELOG.md",
     lambda t: COMMIT.sub("`0000000`", t, count=1), "no commit"),
    ("an example pinning a tag never made", "deploy/terraform/examples/terragrunt/terragrunt.hcl",
     lambda t: REF.sub("?ref=v0.1.0", t, count=1), "no tag or commit"),
    # 28fd742: the commit before the module held its policies; it read ../iam/*.json.
    ("an example pinning a commit where the module read ../iam", "deploy/terraform/README.md",
     lambda t: REF.sub("?ref=28fd742", t, count=1), "reads outside its folder"),
]


def self_test():
    assert not failures_of(ROOT), f"the documents must pass before they are broken: {failures_of(ROOT)}"
    missed = []
    for what, rel, edit, caught_by in BREAKS:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for f in ["CHANGELOG.md", "README.md"]:
                shutil.copy(ROOT / f, root / f)
            shutil.copytree(ROOT / "docs", root / "docs")
            shutil.copytree(ROOT / "deploy" / "terraform", root / "deploy" / "terraform")
            path = root / rel
            text = path.read_text()
            broken = edit(text)
            assert broken != text, f"self-test break {what!r}: nothing to change in {rel}; update BREAKS"
            path.write_text(broken)
            found = failures_of(root)
            if not any(caught_by in f for f in found):
                missed.append(f"{what}: not caught (expected a failure mentioning {caught_by!r}; got {found})")
    return missed


def main(argv):
    if argv[:1] == ["--self-test"]:
        missed = self_test()
        if missed:
            print("check_release_refs --self-test:", *missed, sep="\n  - ", file=sys.stderr)
        return 1 if missed else 0
    failures = failures_of(ROOT)
    if failures:
        print("check_release_refs:", *failures, sep="\n  - ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
