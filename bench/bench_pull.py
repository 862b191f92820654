#!/usr/bin/env python3
"""Cold pull + convert of an image from the sandbox registry: hpcctl vs the Sarus pipeline vs Charliecloud.

    python bench/bench_pull.py [--image 127.0.0.1:5000/hpcctl/debian:bookworm] [--repeat 3] [--json out.json]

Measured in one run, alternating the tools each round, from fresh caches (the registry's files stay in the page
cache for all of them alike):
- hpcctl: `hpcctl image pull` into an empty cache: ready squashfs.
- Sarus pipeline: `skopeo copy` + `umoci unpack` + `mksquashfs` with the same compression (zstd level 3).
- Charliecloud: `ch-image pull` into empty storage (an unpacked directory; ch-image speaks HTTPS only, so this
  script starts a TLS registry on the same storage at 127.0.0.1:5443 for it, with a throwaway certificate).
Also: the requests a warm resolve makes (from the registry's access log) and the peak memory of one pull for images
of growing size (it must stay flat). Needs root and a running sandbox (`hpcctl sandbox up`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpcctl.image.squashfs import mksquashfs_args  # noqa: E402

REGISTRY_STORAGE = Path("/var/lib/hpcctl-sandbox/registry")
REGISTRY_LOG = Path("/var/log/hpcctl-sandbox/registry.log")
TLS_ADDR = "127.0.0.1:5443"
COMPRESSION = "zstd"


def run_measured(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB of the biggest process in the tree) of one command; raises on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-2000:]}")
    return wall, usage.ru_maxrss


def site_file(workdir: Path, cache: Path) -> Path:
    path = workdir / "site.yaml"
    path.write_text("version: 1\ncluster: bench\n"
                    f"cache: {{root: {cache}, compression: {COMPRESSION}}}\n"
                    "registries: {insecure: [127.0.0.1:5000, 127.0.0.1:5001]}\n")
    return path


def hpcctl_pull(image: str, workdir: Path) -> tuple[float, int]:
    cache = workdir / "hpcctl-cache"
    shutil.rmtree(cache, ignore_errors=True)
    site = site_file(workdir, cache)
    return run_measured([sys.executable, "-m", "hpcctl", "--site", str(site), "image", "pull", "--json", image],
                        cwd=str(REPO))


def sarus_pipeline(image: str, workdir: Path) -> tuple[float, dict]:
    oci, bundle, out = workdir / "oci", workdir / "bundle", workdir / "sarus.sqsh"
    for path in (oci, bundle):
        shutil.rmtree(path, ignore_errors=True)
    out.unlink(missing_ok=True)
    phases = {}
    phases["skopeo copy"], _ = run_measured(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                             f"docker://{image}", f"oci:{oci}:image"])
    phases["umoci unpack"], _ = run_measured(["umoci", "unpack", "--image", f"{oci}:image", str(bundle)])
    phases["mksquashfs"], _ = run_measured(["mksquashfs", str(bundle / "rootfs"), str(out), "-noappend", "-quiet",
                                            "-no-progress", *mksquashfs_args(COMPRESSION)])
    return sum(phases.values()), phases


def charliecloud_pull(image: str, workdir: Path, ca: Path) -> float:
    storage = workdir / "ch-storage"
    shutil.rmtree(storage, ignore_errors=True)
    tls_image = TLS_ADDR + "/" + image.split("/", 1)[1]
    env = {**os.environ, "USER": os.environ.get("USER", "root"), "REQUESTS_CA_BUNDLE": str(ca)}
    env.pop("CURL_CA_BUNDLE", None)
    wall, _ = run_measured(["/usr/bin/python3", "/usr/bin/ch-image", "-s", str(storage), "pull", tls_image],
                           env=env)
    return wall


class TlsRegistry:
    """A second docker-registry on the sandbox's storage, with a throwaway self-signed certificate."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "tls-registry"
        self.dir.mkdir(exist_ok=True)
        self.cert = self.dir / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                        str(self.dir / "key.pem"), "-out", str(self.dir / "cert.pem")], check=True,
                       capture_output=True)
        (self.dir / "config.yml").write_text(
            f"version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {REGISTRY_STORAGE}}}}}\n"
            f"http: {{addr: {TLS_ADDR}, tls: {{certificate: {self.dir / 'cert.pem'}, key: {self.dir / 'key.pem'}}}}}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["curl", "-skf", f"https://{TLS_ADDR}/v2/"], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"the TLS registry on {TLS_ADDR} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def registry_requests_during(fn, repo: str) -> int:
    """Requests for ``repo`` in the registry's access log while ``fn`` runs (other users of the sandbox
    registry pulling the same repository at that moment would be counted too)."""
    offset = REGISTRY_LOG.stat().st_size
    fn()
    time.sleep(0.5)
    with open(REGISTRY_LOG, "rb") as fh:
        fh.seek(offset)
        return sum(1 for line in fh.read().decode(errors="replace").splitlines()
                   if line.startswith("127.0.0.1 - -") and f" /v2/{repo}/" in line)


def warm_costs(image: str, workdir: Path) -> dict:
    cache = workdir / "hpcctl-cache"
    site = site_file(workdir, cache)
    base = [sys.executable, "-m", "hpcctl", "--site", str(site), "image"]
    subprocess.run([*base, "pull", "--json", image], check=True, capture_output=True, cwd=REPO)
    pinned = subprocess.run([*base, "resolve", image], check=True, capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    repo = image.split("/", 1)[1].rsplit(":", 1)[0]
    start = time.perf_counter()
    tag_requests = registry_requests_during(
        lambda: subprocess.run([*base, "pull", "--json", image], check=True, capture_output=True, cwd=REPO), repo)
    warm_wall = time.perf_counter() - start - 0.5
    pinned_requests = registry_requests_during(
        lambda: subprocess.run([*base, "pull", "--json", pinned], check=True, capture_output=True, cwd=REPO), repo)
    return {"warm_tag_requests": tag_requests, "warm_pinned_requests": pinned_requests,
            "warm_pull_wall_s": round(warm_wall, 3)}


def big_image(image: str, workdir: Path, extra_mib: int) -> str:
    """The image plus one layer holding ``extra_mib`` MiB of incompressible data, pushed once as TAG-bigN."""
    from hpcctl.sandbox.oci_push import Layer, Pusher
    registry, rest = image.split("/", 1)
    repo, tag = rest.rsplit(":", 1)
    big_tag = f"{tag}-big{extra_mib}"
    pusher = Pusher(registry)
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    if pusher.has_manifest(repo, big_tag, accept) or pusher.has_manifest(
            repo, big_tag, "application/vnd.oci.image.manifest.v1+json"):
        return f"{registry}/{repo}:{big_tag}"
    out = subprocess.run(["curl", "-sf", "-H", f"Accept: {accept}",
                          f"http://{registry}/v2/{repo}/manifests/{tag}"], capture_output=True, check=True).stdout
    manifest = json.loads(out)
    config = json.loads(subprocess.run(["curl", "-sf", f"http://{registry}/v2/{repo}/blobs/"
                                        f"{manifest['config']['digest']}"], capture_output=True, check=True).stdout)
    layers = [Layer(Path("/nonexistent"), d["digest"], diff, d["size"])
              for d, diff in zip(manifest["layers"], config["rootfs"]["diff_ids"])]
    tree = workdir / "big-tree"
    (tree / "opt/data").mkdir(parents=True, exist_ok=True)
    with open(tree / "opt/data/blob.bin", "wb") as fh:
        for _ in range(extra_mib):
            fh.write(os.urandom(1 << 20))
    from hpcctl.sandbox.oci_push import build_layer
    layers.append(build_layer(tree, workdir / f"big{extra_mib}.tar.gz", ["./opt"]))
    shutil.rmtree(tree)
    del config["rootfs"]
    pusher.push_image(repo, big_tag, layers, config, docker_v2=True)
    return f"{registry}/{repo}:{big_tag}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="127.0.0.1:5000/hpcctl/debian:bookworm")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-sizes", default="256,768", help="MiB added to the image for the memory check")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (umoci unpack and the node cache need it)")
    workdir = Path(tempfile.mkdtemp(prefix="hpcctl-bench-", dir="/var/tmp"))
    tls = TlsRegistry(workdir)
    try:
        ours, sarus, charlie, phases, rss = [], [], [], [], []
        for round_no in range(args.repeat):
            order = [("hpcctl", lambda: ours.append(hpcctl_pull(args.image, workdir)[0])),
                     ("sarus", lambda: phases.append(sarus_pipeline(args.image, workdir)[1])),
                     ("charliecloud", lambda: charlie.append(charliecloud_pull(args.image, workdir, tls.cert)))]
            for _, step in order[round_no % 3:] + order[:round_no % 3]:
                step()
        sarus = [sum(p.values()) for p in phases]
        warm = warm_costs(args.image, workdir)
        busybox = args.image.rsplit("/", 2)[0] + "/hpcctl/busybox:latest"
        rss.append(("busybox", hpcctl_pull(busybox, workdir)[1]))
        rss.append((args.image.rsplit("/", 1)[-1], hpcctl_pull(args.image, workdir)[1]))
        for extra in (int(x) for x in args.memory_sizes.split(",") if x):
            rss.append((f"+{extra} MiB layer", hpcctl_pull(big_image(args.image, workdir, extra), workdir)[1]))
    finally:
        tls.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    med = statistics.median
    result = {
        "image": args.image, "repeat": args.repeat, "compression": COMPRESSION,
        "hpcctl_s": [round(x, 2) for x in ours], "sarus_s": [round(x, 2) for x in sarus],
        "charliecloud_s": [round(x, 2) for x in charlie],
        "sarus_phases_median_s": {k: round(med([p[k] for p in phases]), 2) for k in phases[0]},
        "ratio_vs_sarus": round(med(ours) / med(sarus), 3), "ratio_vs_charliecloud": round(med(ours) / med(charlie), 3),
        **warm, "peak_rss_mib": {name: round(kib / 1024, 1) for name, kib in rss},
    }
    print(f"image: {args.image} ({args.repeat} rounds, squashfs compression {COMPRESSION} level 3)")
    print(f"  hpcctl image pull          median {med(ours):6.2f} s   {result['hpcctl_s']}")
    print(f"  skopeo+umoci+mksquashfs    median {med(sarus):6.2f} s   {result['sarus_s']}  "
          f"phases {result['sarus_phases_median_s']}")
    print(f"  ch-image pull              median {med(charlie):6.2f} s   {result['charliecloud_s']}")
    print(f"ratio hpcctl / Sarus pipeline:  {result['ratio_vs_sarus']:.3f}  (target <= 0.5)")
    print(f"ratio hpcctl / ch-image pull:   {result['ratio_vs_charliecloud']:.3f}  (target < 1)")
    print(f"warm pull by tag: {warm['warm_tag_requests']} registry request(s), {warm['warm_pull_wall_s']} s; "
          f"digest-pinned: {warm['warm_pinned_requests']} request(s)")
    print("peak RSS of one cold pull (largest process: hpcctl, tar2sqfs or pigz): "
          + ", ".join(f"{name} {mib} MiB" for name, mib in result["peak_rss_mib"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
