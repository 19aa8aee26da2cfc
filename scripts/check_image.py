"""The eipool image, proven on this machine. Containers cannot run here (podman fails on
setrlimit/cgroups in this sandbox), so this unpacks the OCI archive with umoci and runs its root
filesystem under `chroot --userspec=65532:65532`, with the image's entrypoint and environment:

- the image's config: user 65532, the entrypoint, the OCI labels; no shell anywhere in it;
- `eipool --version` names the crate's version and this commit;
- a real `eipool claim` against moto (EC2) and redis-server on loopback: the address is
  associated in EC2 and the claim recorded in Redis;
- TLS to a Redis with a private CA: with `--redis-ca-file` (mounted in, as a Secret would be)
  it works; without it the image's roots refuse that server (exit 2, "not trusted"); and with
  the CA added to the image's bundle it works without the flag, so the bundle is what eipool
  trusts — and that bundle holds Amazon Root CA 1-4 (which sign ElastiCache's certificates);
- a read-only root: nothing in the root filesystem changes outside /tmp (chroot cannot make it
  read-only, so every file's metadata is compared before and after).

Every endpoint is on 127.0.0.1 and instance metadata is disabled: no traffic leaves the machine.

And the Dockerfile (for machines with registry access) is held to the same image: its stages are
parsed (not built) and its final image simulated — the runtime stage's scripts/image-rootfs run
here, then its COPY instructions — and compared with the unpacked image by file list (type, mode,
owner) and config (user, entrypoint, environment, working directory, labels); `--self-test`
style breaks of the Dockerfile are each shown caught.

    check_image.py ARCHIVE
"""
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
POOL = "image-proof"
AMAZON_ROOTS = [f"Amazon Root CA {n}" for n in (1, 2, 3, 4)]
SHELLS = {"sh", "bash", "dash", "ash", "busybox", "zsh"}


class Failed(Exception):
    pass


def expect(ok, why):
    if not ok:
        raise Failed(why)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, name, log):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failed(f"{name} exited with {proc.returncode}: {Path(log).read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise Failed(f"{name} did not listen on 127.0.0.1:{port} within 60 s")


class Services:
    """moto and redis-servers this check starts; all stopped on exit, whatever happens."""

    def __init__(self, tmp):
        self.tmp, self.procs = tmp, []

    def start(self, name, argv, port):
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_port(port, proc, name, log)
        return proc

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def snapshot(rootfs):
    """Every path of the root filesystem outside /tmp with its type, mode, owner, size, mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(rootfs):
        rel_dir = os.path.relpath(dirpath, rootfs)
        if rel_dir == "tmp" or rel_dir.startswith("tmp/"):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel == "tmp":
                continue  # /tmp itself changes (its mtime) as files are written in it
            st = os.lstat(p)
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                        os.readlink(p) if os.path.islink(p) else None)
    st = os.lstat(rootfs)
    out["."] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return out


def subjects(bundle):
    """The subject of each certificate of a PEM bundle (openssl)."""
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", bundle.read_text(), re.S)
    out = []
    for pem in pems:
        r = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253"], input=pem,
                           capture_output=True, text=True, check=True)
        out.append(r.stdout.strip())
    return out


def make_certs(d):
    """A private CA and a server certificate for 127.0.0.1 signed by it; another CA (unrelated)."""
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=eipool image proof CA",
         "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(d / "server.key"),
         "-out", str(d / "server.csr"))
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
         "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.crt"))
    os.chmod(d / "server.key", 0o644)  # redis-server runs as root here; the CA is read in the chroot


class Image:
    def __init__(self, archive, tmp):
        layout, self.bundle = tmp / "layout", tmp / "bundle"
        with tarfile.open(archive) as t:
            t.extractall(layout, filter="fully_trusted")
        index = json.loads((layout / "index.json").read_text())
        ref = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        manifest = json.loads((layout / "blobs" / index["manifests"][0]["digest"].replace(":", "/")).read_text())
        self.config = json.loads((layout / "blobs" / manifest["config"]["digest"].replace(":", "/")).read_text())
        expect(shutil.which("umoci"), "umoci not found: run scripts/bootstrap")
        r = subprocess.run(["umoci", "unpack", "--image", f"{layout}:{ref}", str(self.bundle)], capture_output=True, text=True)
        expect(r.returncode == 0, f"umoci unpack failed: {r.stderr.strip()}")
        self.rootfs = self.bundle / "rootfs"
        self.process = json.loads((self.bundle / "config.json").read_text())["process"]
        self.chroot = shutil.which("chroot")
        self.unshare = shutil.which("unshare")
        self.mount = shutil.which("mount")

    def run(self, args, env, binds=(), timeout=120):
        """The image's entrypoint with `args`, as its user, in its root filesystem; `binds`:
        (host file or dir, path in the image) mounted for this run only (a private mount
        namespace), as the kubelet mounts a Secret."""
        user = self.process["user"]
        image_env = dict(e.split("=", 1) for e in self.process["env"])
        cmd = [self.chroot, f"--userspec={user['uid']}:{user['gid']}", str(self.rootfs), *self.process["args"], *args]
        if binds:
            script = " && ".join(f'{self.mount} --bind "{src}" "{self.rootfs}{dst}"' for src, dst in binds) + ' && exec "$@"'
            cmd = [self.unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", *cmd]
        r = subprocess.run(cmd, env={**image_env, **env}, capture_output=True, text=True, timeout=timeout)
        return r


def listing(rootfs, owners=None):
    """{path: (type, mode, uid, gid)} of a root filesystem; `owners`: {path prefix: (uid, gid)}
    overrides (a COPY --chown)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, rootfs)
            st = os.lstat(p)
            kind = "l" if os.path.islink(p) else "d" if os.path.isdir(p) else "f"
            out[rel] = (kind, oct(st.st_mode & 0o7777) if kind != "l" else None, st.st_uid, st.st_gid)
    return out


def dockerfile_stages(text):
    """[{from, name, instrs: [(INSTR, rest)]}] of a Dockerfile (continuations joined, comments dropped)."""
    stages, logical = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not logical:
            continue
        logical += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if line.rstrip().endswith("\\") or not logical:
            continue
        instr, _, rest = logical.partition(" ")
        logical = ""
        if instr.upper() == "FROM":
            words = rest.split()
            stages.append({"from": words[0], "name": words[2] if len(words) > 2 and words[1].upper() == "AS" else None, "instrs": []})
        elif stages:
            stages[-1]["instrs"].append((instr.upper(), rest.strip()))
    return stages


def dockerfile_image(text, tmp):
    """The image the Dockerfile builds, simulated: (listing, config) or a failure."""
    stages = dockerfile_stages(text)
    expect(stages, "the Dockerfile has stages")
    final = stages[-1]
    expect(final["from"] == "scratch", f"the Dockerfile's image starts from scratch (no shell): FROM {final['from']}")
    by_name = {s["name"]: s for s in stages if s["name"]}
    args = {}
    files, config = {}, {"Env": [], "Labels": {}}
    for instr, rest in final["instrs"]:
        if instr == "ARG":
            k, _, v = rest.partition("=")
            args[k] = v
        elif instr == "COPY":
            words = shlex.split(rest)
            flags = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if w.startswith("--")}
            src, dest = [w for w in words if not w.startswith("--")]
            stage = by_name.get(flags.get("--from"))
            expect(stage is not None, f"COPY {rest}: from a stage of the Dockerfile")
            owner = tuple(int(x) for x in flags["--chown"].split(":")) if "--chown" in flags else (0, 0)
            runs = " ".join(r for i, r in stage["instrs"] if i == "RUN")
            if re.search(r"(^|\s)image-rootfs /rootfs(\s|$)", runs) and src.startswith("/rootfs"):
                rootfs_dir = tmp / "dockerfile-rootfs"
                if not rootfs_dir.exists():
                    # What the runtime stage's RUN makes: the same script, run here (once).
                    r = subprocess.run([str(ROOT / "scripts/image-rootfs"), str(rootfs_dir)], capture_output=True, text=True)
                    expect(r.returncode == 0, f"scripts/image-rootfs failed: {r.stderr}")
                sub = src[len("/rootfs"):].strip("/")
                base = dest.strip("/")
                for rel, (kind, mode, _, _) in listing(rootfs_dir / sub if sub else rootfs_dir).items():
                    files[os.path.normpath(os.path.join(base, rel))] = (kind, mode, *owner)
                if base:
                    files[base] = (listing(rootfs_dir)[sub][0], listing(rootfs_dir)[sub][1], *owner)
            elif "cargo build --release" in runs and src.endswith("/target/release/eipool"):
                d = dest.strip("/")
                files[d] = ("f", "0o755", *owner)
                parts = d.split("/")
                for i in range(1, len(parts)):
                    files.setdefault("/".join(parts[:i]), ("d", "0o755", 0, 0))
            else:
                raise Failed(f"COPY {rest}: neither the runtime (scripts/image-rootfs) nor the release binary")
        elif instr == "ENV":
            config["Env"] += shlex.split(rest)
        elif instr == "WORKDIR":
            config["WorkingDir"] = rest
        elif instr == "USER":
            config["User"] = rest
        elif instr == "ENTRYPOINT":
            config["Entrypoint"] = json.loads(rest)
        elif instr == "LABEL":
            for kv in shlex.split(rest):
                k, _, v = kv.partition("=")
                config["Labels"][k] = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), v)
        else:
            raise Failed(f"the Dockerfile's image does {instr} {rest}: add it to scripts/image and to this comparison")
    build = next((s for s in stages if "cargo build --release" in " ".join(r for i, r in s["instrs"] if i == "RUN")), {"instrs": []})
    expect(any(i == "RUN" and "EIPOOL_GIT_REVISION=$EIPOOL_GIT_REVISION" in r for i, r in build["instrs"]),
           "the Dockerfile's cargo build gets the git revision (EIPOOL_GIT_REVISION) for `eipool --version`")
    return files, config


def compare_dockerfile(text, image, tmp):
    """The differences between the Dockerfile's image and the built one."""
    try:
        files, config = dockerfile_image(text, tmp)
    except Failed as e:
        return [str(e)]
    diffs = []
    built = listing(image.rootfs)
    for rel in sorted(set(files) | set(built)):
        if files.get(rel) != built.get(rel):
            diffs.append(f"/{rel}: Dockerfile {files.get(rel)} vs image {built.get(rel)}")
    c = image.config["config"]
    for key in ("User", "Entrypoint", "WorkingDir"):
        if config.get(key) != c.get(key):
            diffs.append(f"{key}: Dockerfile {config.get(key)!r} vs image {c.get(key)!r}")
    if sorted(config["Env"]) != sorted(c.get("Env", [])):
        diffs.append(f"Env: Dockerfile {sorted(config['Env'])} vs image {sorted(c.get('Env', []))}")
    # buildah stamps its own version (io.buildah.version); docker stamps none.
    labels = {k: v for k, v in c.get("Labels", {}).items() if not k.startswith("io.buildah.")}
    for k in sorted(set(config["Labels"]) | set(labels)):
        # The revision and source are the build's arguments; the rest must be equal.
        if k.endswith((".revision", ".source")):
            if k not in config["Labels"] or k not in labels:
                diffs.append(f"label {k}: in one image only")
        elif config["Labels"].get(k) != labels.get(k):
            diffs.append(f"label {k}: Dockerfile {config['Labels'].get(k)!r} vs image {labels.get(k)!r}")
    return diffs


# Known ways the Dockerfile can drift from scripts/image, each with (part of) the difference
# that must be reported.
DOCKERFILE_BREAKS = [
    ("runs as root", ("USER 65532:65532", "USER 0:0"), "User"),
    ("the home not the user's", ("COPY --from=runtime --chown=65532:65532 /rootfs/home/nonroot /home/nonroot\n", ""), "/home/nonroot"),
    ("the binary elsewhere", ("/usr/local/bin/eipool\nENV", "/usr/bin/eipool\nENV"), "/usr/"),
    ("a distroless base with a different layout", ("FROM scratch", "FROM gcr.io/distroless/cc-debian12:nonroot"), "scratch"),
    ("a label missing", ("      org.opencontainers.image.licenses=Apache-2.0 \\\n", ""), "licenses"),
    ("another version", ("ARG EIPOOL_VERSION=", "ARG EIPOOL_VERSION=9"), "version"),
]


def check_config(image, expected_revision):
    c = image.config["config"]
    expect(c.get("User") == "65532:65532", f"the image runs as 65532:65532, not {c.get('User')!r}")
    expect(c.get("Entrypoint") == ["/usr/local/bin/eipool"], f"the entrypoint is /usr/local/bin/eipool: {c.get('Entrypoint')}")
    labels = c.get("Labels", {})
    version = re.search(r'^version = "(.+)"$', (ROOT / "crates/eipool/Cargo.toml").read_text(), re.M)[1]
    expect(labels.get("org.opencontainers.image.version") == version, f"the version label is {version}: {labels}")
    expect(labels.get("org.opencontainers.image.revision") == expected_revision,
           f"the revision label is this commit {expected_revision}: {labels.get('org.opencontainers.image.revision')}")
    expect(bool(labels.get("org.opencontainers.image.source")), "the image has a source label")
    shells = [str(p.relative_to(image.rootfs)) for p in image.rootfs.rglob("*") if p.name in SHELLS]
    expect(not shells, f"no shell in the image: found {shells}")
    for f in ("etc/passwd", "etc/group"):
        expect(re.search(r"^nonroot:x:65532:", (image.rootfs / f).read_text(), re.M), f"/{f} names 65532 nonroot")
    expect(image.process["user"]["uid"] == 65532 and image.process["user"]["gid"] == 65532, "umoci's runtime config runs as 65532")


def main(argv):
    archive = Path(argv[0]).resolve()
    expected_revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="eipool-check-image."))
    services = Services(tmp)
    try:
        image = Image(archive, tmp)
        check_config(image, expected_revision)
        print("check-image: config: user 65532:65532, entrypoint /usr/local/bin/eipool, OCI labels, no shell")

        dockerfile = (ROOT / "Dockerfile").read_text()
        diffs = compare_dockerfile(dockerfile, image, tmp)
        expect(not diffs, "the Dockerfile builds another image than scripts/image:\n  " + "\n  ".join(diffs[:30]))
        for what, (old, new), caught_by in DOCKERFILE_BREAKS:
            expect(old in dockerfile, f"Dockerfile self-test {what!r}: {old!r} is no longer in the Dockerfile; update DOCKERFILE_BREAKS")
            found = compare_dockerfile(dockerfile.replace(old, new, 1), image, tmp)
            expect(any(caught_by in d for d in found), f"a Dockerfile that {what} is not caught (expected {caught_by!r}): {found}")
        print(f"check-image: the Dockerfile's image (simulated from its stages) has the same {len(listing(image.rootfs))} paths, "
              f"user, entrypoint, environment and labels; {len(DOCKERFILE_BREAKS)} kinds of drift shown caught")

        bundle = image.rootfs / "etc/ssl/certs/ca-certificates.crt"
        subs = subjects(bundle)
        missing = [n for n in AMAZON_ROOTS if not any(f"CN={n}," in s + "," and "O=Amazon" in s for s in subs)]
        expect(not missing, f"the image's CA bundle ({len(subs)} certificates) lacks {missing}")
        print(f"check-image: the CA bundle holds {len(subs)} roots, Amazon Root CA 1-4 among them")

        # The mount point the kubelet would make for the Redis CA Secret (not eipool's write).
        (image.rootfs / "etc/eipool/redis-ca").mkdir(parents=True)
        before = snapshot(image.rootfs)

        r = image.run(["--version"], {})
        short = expected_revision[:12]
        expect(r.returncode == 0 and re.fullmatch(rf"eipool \S+ \({short}\)\n", r.stdout),
               f"`eipool --version` in the image names this commit ({short}): exit {r.returncode}, {r.stdout!r} {r.stderr[-500:]!r}")
        print(f"check-image: eipool --version as 65532 in the image: {r.stdout.strip()}")

        # Real services on loopback.
        moto_port, redis_port, tls_port = free_port(), free_port(), free_port()
        services.start("moto", [str(ROOT / ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], moto_port)
        redis = shutil.which("redis-server")
        expect(redis, "redis-server not found: run scripts/bootstrap")
        services.start("redis", [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], redis_port)
        certs = tmp / "certs"
        certs.mkdir()
        make_certs(certs)
        services.start("redis-tls", [redis, "--port", "0", "--tls-port", str(tls_port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--tls-cert-file", str(certs / "server.crt"),
                                     "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file", str(certs / "ca.crt"),
                                     "--tls-auth-clients", "no"], tls_port)

        ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instances = ec2.run_instances(ImageId=ami, MinCount=3, MaxCount=3, InstanceType="t3.micro", SubnetId=subnet)["Instances"]
        enis = [i["NetworkInterfaces"][0]["NetworkInterfaceId"] for i in instances]
        for _ in range(3):
            ec2.allocate_address(Domain="vpc", TagSpecifications=[
                {"ResourceType": "elastic-ip", "Tags": [{"Key": "eipool:pool", "Value": POOL}]}])
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}", "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}

        def claim(eni, url, *extra, binds=()):
            return image.run(["--pool", POOL, "--redis-url", url, "--network-interface-id", eni, "claim",
                              "--timeout", "60s", "--output", f"/tmp/{eni}.env", *extra], env, binds=binds)

        def holders(*conn):
            r = subprocess.run(["redis-cli", *conn, "HLEN", f"eipool:{{{POOL}}}:holders"], capture_output=True, text=True)
            return r.stdout.strip()

        def associated(eni, out):
            expect(out.returncode == 0, f"claim for {eni}: exit {out.returncode}: {out.stderr[-1500:]}")
            ip = json.loads(out.stdout)["public_ip"]
            addr = ec2.describe_addresses(PublicIps=[ip])["Addresses"][0]
            expect(addr.get("NetworkInterfaceId") == eni and {"Key": "eipool:pool", "Value": POOL} in addr.get("Tags", []),
                   f"EC2 has the pool's {ip} on {eni}: {addr}")
            env_file = (image.rootfs / "tmp" / f"{eni}.env").read_text()
            expect(f"EIPOOL_PUBLIC_IP={ip}" in env_file, f"the env file in /tmp names {ip}: {env_file!r}")
            return ip

        out = claim(enis[0], f"redis://127.0.0.1:{redis_port}")
        ip = associated(enis[0], out)
        expect(holders("-p", str(redis_port)) == "1", "the claim is recorded in Redis")
        print(f"check-image: eipool claim in the image (moto + redis-server on loopback): {ip} on {enis[0]}, recorded in Redis")

        tls = f"rediss://127.0.0.1:{tls_port}"
        ca_dir = tmp / "redis-ca"
        ca_dir.mkdir()
        shutil.copy(certs / "ca.crt", ca_dir / "ca.crt")
        out = claim(enis[1], tls, "--redis-ca-file", "/etc/eipool/redis-ca/ca.crt", binds=[(ca_dir, "/etc/eipool/redis-ca")])
        ip = associated(enis[1], out)
        expect(holders("--tls", "--cacert", str(certs / "ca.crt"), "-p", str(tls_port)) == "1", "the TLS claim is recorded in that Redis")
        print(f"check-image: over TLS to a private-CA Redis with --redis-ca-file mounted in: {ip} on {enis[1]}")

        out = claim(enis[2], tls)
        expect(out.returncode == 2 and "not trusted" in out.stderr,
               f"without --redis-ca-file the image's roots refuse the private CA (exit 2, not trusted): exit {out.returncode}: {out.stderr[-1500:]}")
        trusting = tmp / "bundle-with-private-ca.crt"
        trusting.write_text(bundle.read_text() + (certs / "ca.crt").read_text())
        out = claim(enis[2], tls, binds=[(trusting, "/etc/ssl/certs/ca-certificates.crt")])
        ip = associated(enis[2], out)
        print("check-image: without the flag the private CA is refused (exit 2); added to the image's bundle it is "
              f"trusted ({ip}): eipool's roots are /etc/ssl/certs/ca-certificates.crt")

        after = snapshot(image.rootfs)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        expect(not changed, f"nothing in the root filesystem changed outside /tmp: {changed[:20]}")
        written = sorted(p.name for p in (image.rootfs / "tmp").iterdir())
        expect(len(written) == 3, f"the three env files were written to /tmp: {written}")
        # The comparison can fail: the same (idempotent) claim writing its env file to the home
        # directory, which 65532 may write, is seen.
        out = image.run(["--pool", POOL, "--redis-url", f"redis://127.0.0.1:{redis_port}", "--network-interface-id", enis[0],
                         "claim", "--timeout", "60s", "--output", "/home/nonroot/eipool.env"], env)
        expect(out.returncode == 0 and json.loads(out.stdout)["reused"] is True, f"the repeated claim adopts: {out.stdout} {out.stderr[-800:]}")
        seen = sorted(k for k in set(before) | set(snapshot(image.rootfs)) if before.get(k) != snapshot(image.rootfs).get(k))
        expect("home/nonroot/eipool.env" in seen, f"a write outside /tmp is seen by the comparison: {seen}")
        print(f"check-image: read-only root: {len(before)} paths unchanged outside /tmp (written there: {', '.join(written)}); "
              "a write to /home/nonroot is caught")
        return 0
    except Failed as e:
        print(f"check-image: {e}", file=sys.stderr)
        return 1
    finally:
        services.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
