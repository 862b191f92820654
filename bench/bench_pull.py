#!/usr/bin/env python3
"""Cold pull + convert of an image from the sandbox registry: hpcctl vs the limit vs the Sarus pipeline vs Charliecloud.

    python bench/bench_pull.py [--image 127.0.0.1:5000/hpcctl/debian:bookworm] [--repeat 3] [--json out.json]
    python bench/bench_pull.py --large [--repeat 3]

Measured in one run, alternating the tools each round, from fresh caches (the registry's files stay in the page
cache for all of them alike):
- hpcctl: `hpcctl image pull` into an empty cache: ready squashfs.
- the limit: the bare work, one step after the other: `pigz -dc` of every layer blob at once (from the registry's
  storage), then `mksquashfs` of the unpacked tree with hpcctl's codec, level and block size. No pipeline that must
  decompress and compress every byte does better than this without overlapping the two.
- Sarus pipeline: `skopeo copy` + `umoci unpack` + `mksquashfs` with the same compression (zstd level 3).
- Charliecloud: `ch-image pull` into empty storage (an unpacked directory; ch-image speaks HTTPS only, so this
  script starts a TLS registry on the same storage at 127.0.0.1:5443 for it, with a throwaway certificate).
Also: the requests a warm resolve makes (from the registry's access log) and the peak memory of one pull for images
of growing size (it must stay flat). With --large: only hpcctl and the limit, on an image of about 2 GiB in 32 layers
(compressible and incompressible files) that the script builds and pushes once as hpcctl/large:32x64. Needs root and
a running sandbox (`hpcctl sandbox up`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpcctl.image.squashfs import mksquashfs_args  # noqa: E402
from hpcctl.sandbox.oci_push import Layer, Pusher, build_layer  # noqa: E402

REGISTRY_STORAGE = Path("/var/lib/hpcctl-sandbox/registry")
REGISTRY_LOG = Path("/var/log/hpcctl-sandbox/registry.log")
TLS_ADDR = "127.0.0.1:5443"
COMPRESSION = "zstd"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"


class Measured(NamedTuple):
    wall: float  # seconds
    rss_kib: int  # peak RSS of the biggest process in the tree
    cpu: float  # user + system seconds of the whole tree


def run_measured(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> Measured:
    """Wall time, peak RSS and CPU time of one command; raises on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-2000:]}")
    return Measured(wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)


def site_file(workdir: Path, cache: Path) -> Path:
    path = workdir / "site.yaml"
    path.write_text("version: 1\ncluster: bench\n"
                    f"cache: {{root: {cache}, compression: {COMPRESSION}}}\n"
                    "registries: {insecure: [127.0.0.1:5000, 127.0.0.1:5001]}\n")
    return path


def hpcctl_pull(image: str, workdir: Path) -> Measured:
    cache = workdir / "hpcctl-cache"
    shutil.rmtree(cache, ignore_errors=True)
    site = site_file(workdir, cache)
    return run_measured([sys.executable, "-m", "hpcctl", "--site", str(site), "image", "pull", "--json", image],
                        cwd=str(REPO))


def manifest_of(image: str) -> tuple[dict, dict]:
    """(manifest, config) of a docker v2 image in the sandbox registry."""
    registry, rest = image.split("/", 1)
    repo, tag = rest.rsplit(":", 1)
    out = subprocess.run(["curl", "-sf", "-H", f"Accept: {DOCKER_V2}", f"http://{registry}/v2/{repo}/manifests/{tag}"],
                         capture_output=True, check=True).stdout
    manifest = json.loads(out)
    config = json.loads(subprocess.run(["curl", "-sf", f"http://{registry}/v2/{repo}/blobs/"
                                        f"{manifest['config']['digest']}"], capture_output=True, check=True).stdout)
    return manifest, config


def layer_blobs(image: str) -> list[Path]:
    """The image's compressed layers in the registry's storage, oldest first."""
    manifest, _ = manifest_of(image)
    blobs = REGISTRY_STORAGE / "docker/registry/v2/blobs/sha256"
    return [blobs / d["digest"][7:9] / d["digest"][7:] / "data" for d in manifest["layers"]]


def unpack(blobs: list[Path], tree: Path) -> None:
    """The layers extracted one over the other (whiteouts are left as files: they are a few empty files)."""
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir()
    for blob in blobs:
        subprocess.run(["tar", "--numeric-owner", "-xzf", str(blob), "-C", str(tree)], check=True)


def limit_reference(blobs: list[Path], tree: Path, workdir: Path) -> tuple[dict, int, float]:
    """(phase seconds, peak RSS KiB of mksquashfs, CPU seconds of all): every layer decompressed in parallel, then
    mksquashfs of ``tree`` (the unpacked image) with hpcctl's settings."""
    start = time.perf_counter()
    procs = [subprocess.Popen(["pigz", "-dc", str(blob)], stdout=subprocess.DEVNULL) for blob in blobs]
    cpu = 0.0
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        if status:
            raise SystemExit(f"pigz -dc of {proc.args[-1]} failed")
        cpu += usage.ru_utime + usage.ru_stime
    phases = {"pigz -dc (parallel)": time.perf_counter() - start}
    out = workdir / "limit.sqsh"
    out.unlink(missing_ok=True)
    squash = run_measured(["mksquashfs", str(tree), str(out), "-noappend", "-quiet", "-no-progress",
                           *mksquashfs_args(COMPRESSION)])
    out.unlink()
    phases["mksquashfs"] = squash.wall
    return phases, squash.rss_kib, cpu + squash.cpu


def large_image(registry: str, workdir: Path, layers: int = 32, layer_mib: int = 64) -> str:
    """An image of ``layers`` layers of ``layer_mib`` MiB each (half incompressible, half text that compresses about
    4:1 in files of 16-256 KiB), pushed once as hpcctl/large:<layers>x<layer_mib>."""
    repo, tag = "hpcctl/large", f"{layers}x{layer_mib}"
    pusher = Pusher(registry)
    if pusher.has_manifest(repo, tag, DOCKER_V2):
        return f"{registry}/{repo}:{tag}"
    words = [os.urandom(4).hex() for _ in range(4096)]
    pool = " ".join(random.choice(words) for _ in range(2 << 20))
    pushed = []
    for n in range(layers):
        tree = workdir / f"large-{n}"
        data = tree / f"data/layer{n:02d}"
        data.mkdir(parents=True, exist_ok=True)
        for i in range(layer_mib // 8):
            (data / f"random{i}.bin").write_bytes(os.urandom(4 << 20))
            size = 16 << 10 << (i % 5)
            for j in range((4 << 20) // size):
                start = random.randrange(len(pool) - size)
                (data / f"text{i}-{j}.txt").write_text(pool[start:start + size])
        pushed.append(build_layer(tree, workdir / f"large-{n}.tar.gz", ["./data"]))
        shutil.rmtree(tree)
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]}}
    pusher.push_image(repo, tag, pushed, config, docker_v2=True)
    for layer in pushed:
        layer.path.unlink()
        layer.path.with_suffix(".json").unlink()
    return f"{registry}/{repo}:{tag}"


def sarus_pipeline(image: str, workdir: Path) -> tuple[float, dict]:
    oci, bundle, out = workdir / "oci", workdir / "bundle", workdir / "sarus.sqsh"
    for path in (oci, bundle):
        shutil.rmtree(path, ignore_errors=True)
    out.unlink(missing_ok=True)
    phases = {}
    phases["skopeo copy"] = run_measured(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                          f"docker://{image}", f"oci:{oci}:image"]).wall
    phases["umoci unpack"] = run_measured(["umoci", "unpack", "--image", f"{oci}:image", str(bundle)]).wall
    phases["mksquashfs"] = run_measured(["mksquashfs", str(bundle / "rootfs"), str(out), "-noappend", "-quiet",
                                         "-no-progress", *mksquashfs_args(COMPRESSION)]).wall
    return sum(phases.values()), phases


def charliecloud_pull(image: str, workdir: Path, ca: Path) -> float:
    storage = workdir / "ch-storage"
    shutil.rmtree(storage, ignore_errors=True)
    tls_image = TLS_ADDR + "/" + image.split("/", 1)[1]
    env = {**os.environ, "USER": os.environ.get("USER", "root"), "REQUESTS_CA_BUNDLE": str(ca)}
    env.pop("CURL_CA_BUNDLE", None)
    return run_measured(["/usr/bin/python3", "/usr/bin/ch-image", "-s", str(storage), "pull", tls_image],
                        env=env).wall


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
    registry, rest = image.split("/", 1)
    repo, tag = rest.rsplit(":", 1)
    big_tag = f"{tag}-big{extra_mib}"
    pusher = Pusher(registry)
    if pusher.has_manifest(repo, big_tag, DOCKER_V2) or pusher.has_manifest(
            repo, big_tag, "application/vnd.oci.image.manifest.v1+json"):
        return f"{registry}/{repo}:{big_tag}"
    manifest, config = manifest_of(image)
    layers = [Layer(Path("/nonexistent"), d["digest"], diff, d["size"])
              for d, diff in zip(manifest["layers"], config["rootfs"]["diff_ids"])]
    tree = workdir / "big-tree"
    (tree / "opt/data").mkdir(parents=True, exist_ok=True)
    with open(tree / "opt/data/blob.bin", "wb") as fh:
        for _ in range(extra_mib):
            fh.write(os.urandom(1 << 20))
    layers.append(build_layer(tree, workdir / f"big{extra_mib}.tar.gz", ["./opt"]))
    shutil.rmtree(tree)
    del config["rootfs"]
    pusher.push_image(repo, big_tag, layers, config, docker_v2=True)
    return f"{registry}/{repo}:{big_tag}"


def compare_with_limit(image: str, workdir: Path, repeat: int, peers: dict) -> dict:
    """hpcctl and the limit (and each of ``peers``: name -> step returning seconds), alternating every round."""
    blobs = layer_blobs(image)
    tree = workdir / "limit-tree"
    unpack(blobs, tree)
    times: dict = {"hpcctl": [], "limit": [], **{name: [] for name in peers}}
    rss: dict = {"hpcctl": [], "limit": []}
    cpu: dict = {"hpcctl": [], "limit": []}
    limit_phases = []

    def ours():
        pull = hpcctl_pull(image, workdir)
        times["hpcctl"].append(pull.wall)
        rss["hpcctl"].append(pull.rss_kib)
        cpu["hpcctl"].append(pull.cpu)

    def limit():
        phases, kib, seconds = limit_reference(blobs, tree, workdir)
        limit_phases.append(phases)
        times["limit"].append(sum(phases.values()))
        rss["limit"].append(kib)
        cpu["limit"].append(seconds)

    steps = [ours, limit, *[lambda name=name, step=step: times[name].append(step()) for name, step in peers.items()]]
    for round_no in range(repeat):
        shift = round_no % len(steps)
        for step in steps[shift:] + steps[:shift]:
            step()
    shutil.rmtree(tree)
    med = statistics.median
    return {"image": image, "layers": len(blobs), "layer_bytes": sum(b.stat().st_size for b in blobs),
            "times_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
            "median_s": {k: round(med(v), 3) for k, v in times.items()},
            "limit_phases_median_s": {k: round(med([p[k] for p in limit_phases]), 3) for k in limit_phases[0]},
            "min_s": {k: round(min(v), 3) for k, v in times.items()},
            "cpu_median_s": {k: round(med(v), 3) for k, v in cpu.items()},
            "peak_rss_mib": {k: round(max(v) / 1024, 1) for k, v in rss.items()},
            "ratio_vs_limit": round(med(times["hpcctl"]) / med(times["limit"]), 3),
            "ratio_vs_limit_best": round(min(times["hpcctl"]) / min(times["limit"]), 3),
            "cpu_ratio_vs_limit": round(med(cpu["hpcctl"]) / med(cpu["limit"]), 3)}


def print_limit(result: dict) -> None:
    med = result["median_s"]
    print(f"image: {result['image']} ({result['layers']} layers, {result['layer_bytes'] / 2**20:.0f} MiB compressed; "
          f"squashfs {COMPRESSION} level 3, {mksquashfs_args(COMPRESSION)[-1]} byte blocks)")
    cpu = result["cpu_median_s"]
    print(f"  hpcctl image pull          median {med['hpcctl']:6.2f} s   {result['times_s']['hpcctl']}  "
          f"CPU {cpu['hpcctl']} s  peak RSS {result['peak_rss_mib']['hpcctl']} MiB")
    print(f"  limit (pigz, mksquashfs)   median {med['limit']:6.2f} s   {result['times_s']['limit']}  "
          f"CPU {cpu['limit']} s  phases {result['limit_phases_median_s']}  mksquashfs peak RSS "
          f"{result['peak_rss_mib']['limit']} MiB")
    print(f"ratio hpcctl / limit:           {result['ratio_vs_limit']:.3f}  (target <= 1.2; best runs "
          f"{result['ratio_vs_limit_best']:.3f}, CPU time {result['cpu_ratio_vs_limit']:.3f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="127.0.0.1:5000/hpcctl/debian:bookworm")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-sizes", default="256,768", help="MiB added to the image for the memory check")
    parser.add_argument("--no-peers", action="store_true", help="only hpcctl and the limit (no Sarus, no ch-image)")
    parser.add_argument("--large", action="store_true",
                        help="hpcctl and the limit on a 2 GiB image of 32 layers (built and pushed on first use)")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (umoci unpack and the node cache need it)")
    workdir = Path(tempfile.mkdtemp(prefix="hpcctl-bench-", dir="/var/tmp"))
    try:
        if args.large or args.no_peers:
            image = large_image(args.image.split("/", 1)[0], workdir) if args.large else args.image
            result = compare_with_limit(image, workdir, args.repeat, {})
            print_limit(result)
        else:
            result = compare_with_peers(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def compare_with_peers(args, workdir: Path) -> dict:
    tls = TlsRegistry(workdir)
    phases, rss = [], []
    try:
        peers = {"sarus": lambda: phases.append(sarus_pipeline(args.image, workdir)[1]) or sum(phases[-1].values()),
                 "charliecloud": lambda: charliecloud_pull(args.image, workdir, tls.cert)}
        limit = compare_with_limit(args.image, workdir, args.repeat, peers)
        warm = warm_costs(args.image, workdir)
        busybox = args.image.rsplit("/", 2)[0] + "/hpcctl/busybox:latest"
        rss.append(("busybox", hpcctl_pull(busybox, workdir).rss_kib))
        rss.append((args.image.rsplit("/", 1)[-1], hpcctl_pull(args.image, workdir).rss_kib))
        for extra in (int(x) for x in args.memory_sizes.split(",") if x):
            rss.append((f"+{extra} MiB layer", hpcctl_pull(big_image(args.image, workdir, extra), workdir).rss_kib))
    finally:
        tls.stop()

    med = limit["median_s"]
    result = {
        **limit, "repeat": args.repeat, "compression": COMPRESSION,
        "sarus_phases_median_s": {k: round(statistics.median([p[k] for p in phases]), 2) for k in phases[0]},
        "ratio_vs_sarus": round(med["hpcctl"] / med["sarus"], 3),
        "ratio_vs_charliecloud": round(med["hpcctl"] / med["charliecloud"], 3),
        **warm, "peak_rss_mib_by_image": {name: round(kib / 1024, 1) for name, kib in rss},
    }
    print_limit(limit)
    print(f"  skopeo+umoci+mksquashfs    median {med['sarus']:6.2f} s   {limit['times_s']['sarus']}  "
          f"phases {result['sarus_phases_median_s']}")
    print(f"  ch-image pull              median {med['charliecloud']:6.2f} s   {limit['times_s']['charliecloud']}")
    print(f"ratio hpcctl / Sarus pipeline:  {result['ratio_vs_sarus']:.3f}  (target <= 0.5)")
    print(f"ratio hpcctl / ch-image pull:   {result['ratio_vs_charliecloud']:.3f}  (target < 1)")
    print(f"warm pull by tag: {warm['warm_tag_requests']} registry request(s), {warm['warm_pull_wall_s']} s; "
          f"digest-pinned: {warm['warm_pinned_requests']} request(s)")
    print("peak RSS of one cold pull (largest process: hpcctl, tar2sqfs or pigz): "
          + ", ".join(f"{name} {mib} MiB" for name, mib in result["peak_rss_mib_by_image"].items()))
    return result


if __name__ == "__main__":
    sys.exit(main())
