#!/usr/bin/env python3
"""An N-node job with a cold image (issue 14): registry bytes, conversions, and time until every task has started.

    sudo /opt/hpcctl/venv/bin/python bench/bench_scale.py [--nodes 2,4,8,16] [--payload-mib 200]
        [--setups neither,mirror,shared] [--repeat 3] [--json results.json]

For each round, setup and N (rounds interleave the setups; the table shows medians): push a fresh image (busybox
plus PAYLOAD MiB of random, incompressible bytes, one layer: no cache and no mirror has any blob of it), run
`srun -p scale -N N -w n[1-N] --container-image=IMAGE` as the sandbox's user, and measure
- the blob bytes (and GETs) the upstream registry (127.0.0.1:5000) and the mirror (127.0.0.1:5002) served, from
  their access logs;
- conversions: squashfs images of it that appeared in the node caches and in the shared store;
- the seconds from starting srun until every task printed its first line.
Setups (site configs the plugin reads: the bench writes /etc/hpcctl/site.yaml, the file plugstack.conf names, and
puts the sandbox's own back at the end; while plugstack.conf names another file, it waits, and it measures again a
run during which either changed):
- neither: the sandbox's config: one cache per node, no mirror;
- mirror: the same with `registries.mirrors` sending pulls through the pull-through mirror;
- shared: the sandbox's shared-store config (cache.shared, /etc/hpcctl/site-shared.yaml), when the sandbox has one.
Needs root and the sandbox; it starts nodes up to the largest N when fewer run (and goes back after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpcctl.sandbox import cold_image, registry  # noqa: E402
from hpcctl.sandbox import layout as L  # noqa: E402
from hpcctl.sandbox.plugin import PLUGSTACK_ENTRY  # noqa: E402
from hpcctl.sandbox.slurm_conf import write_if_changed  # noqa: E402
from hpcctl.sandbox.up import REPO_SITE  # noqa: E402

BENCH_REPO = "hpcctl-bench/scale"
NODE_CACHES = Path("/var/lib/hpcctl/nodes")
SHARED_SITE = getattr(L, "SHARED_SITE_FILE", None)
SHARED_STORE = getattr(L, "SHARED_STORE", None)


def hpcctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcctl", *args], capture_output=True, text=True, timeout=900)


def site_texts(wanted: list[str]) -> dict[str, str]:
    """The site config text of each setup that can run here."""
    base = REPO_SITE.read_text()
    mirrored = yaml.safe_load(base)
    mirrored["registries"]["mirrors"] = {L.REGISTRY: [L.MIRROR]}
    texts = {"neither": base, "mirror": yaml.safe_dump(mirrored, sort_keys=False)}
    if SHARED_SITE is not None and SHARED_SITE.exists():
        texts["shared"] = SHARED_SITE.read_text()
    missing = [name for name in wanted if name not in texts]
    if missing:
        print(f"skipping setup(s) {', '.join(missing)}: no {SHARED_SITE or 'shared-store site config'} here",
              file=sys.stderr)
    return {name: texts[name] for name in wanted if name in texts}


def entries_of(digest: str) -> tuple[list[str], bool]:
    """(nodes whose cache holds the image, whether the shared store holds it)."""
    key = digest.split(":", 1)[1]
    nodes = sorted((p.parts[-4] for p in NODE_CACHES.glob(f"*/cache/images/{key}.json")), key=lambda n: int(n[1:]))
    shared = bool(SHARED_STORE and (SHARED_STORE / "images" / f"{key}.json").exists())
    return nodes, shared


def start_all(image: str, count: int) -> tuple[float, list[float]]:
    """Run the job; (seconds until the last task's first line, each task's first-line time)."""
    work = Path(f"/home/{L.TEST_USER}")
    argv = ["runuser", "-u", L.TEST_USER, "--", "srun", "-p", L.SCALE_PARTITION, f"-N{count}", "-w", f"n[1-{count}]",
            "--unbuffered", f"--container-image={image}", "sh", "-c", "echo $SLURMD_NODENAME"]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work)
    firsts: dict[str, float] = {}
    for line in proc.stdout:
        name = line.strip()
        if name and name not in firsts:
            firsts[name] = time.monotonic() - started
    err = proc.stderr.read()
    if proc.wait() != 0 or len(firsts) != count:
        raise SystemExit(f"srun -N{count} failed ({proc.returncode}, {len(firsts)} of {count} tasks started): "
                         f"{err.strip()[-1500:]}")
    return max(firsts.values()), sorted(firsts.values())


def forget(image: cold_image.ColdImage, site_file: Path) -> None:
    """Remove the image from every cache, the shared store, the mirror and the registry: the disk is not endless."""
    nodes, shared = entries_of(image.digest)
    for node in nodes or (["n1"] if shared else []):
        hpcctl("--site", str(site_file), "image", "rm", "--node", node, image.digest)
    nodes, shared = entries_of(image.digest)
    if nodes or shared:
        print(f"  note: could not remove {image.digest[:19]} from {nodes or 'the shared store'}", file=sys.stderr)
    storage = L.STATE_DIR / "registry"
    shutil.rmtree(storage / "docker/registry/v2/repositories" / BENCH_REPO, ignore_errors=True)
    for blob in image.blobs:
        hexdigest = blob.split(":", 1)[1]
        shutil.rmtree(storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest, ignore_errors=True)
        registry.mirror_cache_file(BENCH_REPO, blob).unlink(missing_ok=True)


def plugin_reads_site_file() -> bool:
    """Whether plugstack.conf's site= names /etc/hpcctl/site.yaml (tests of the shared store point it elsewhere for
    a while)."""
    return f" site={L.SITE_FILE}" in PLUGSTACK_ENTRY.read_text()


def wait_for_the_plugins_site_file(timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not plugin_reads_site_file():
        if time.monotonic() > deadline:
            raise SystemExit(f"{PLUGSTACK_ENTRY} does not name {L.SITE_FILE} (site=): run `hpcctl sandbox up`")
        time.sleep(5)


def measure(setup: str, text: str, count: int, payload: int, bench_site: Path) -> dict:
    """One job; repeated (twice at most) when the plugin's site config changed under it."""
    for _ in range(3):
        result = measure_once(setup, text, count, payload, bench_site)
        if not result["site_config_changed_during_run"]:
            break
        print(f"  {setup} N={count}: the plugin's site config changed during the run; again", file=sys.stderr)
    return result


def measure_once(setup: str, text: str, count: int, payload: int, bench_site: Path) -> dict:
    image = cold_image.push(BENCH_REPO, payload)
    wait_for_the_plugins_site_file()
    bench_site.write_text(text)
    write_if_changed(L.SITE_FILE, text)  # the plugin reads it at every step
    upstream, mirror = registry.log_offset("registry"), registry.log_offset("registry-mirror")
    try:
        seconds, firsts = start_all(image.reference, count)
        disturbed = L.SITE_FILE.read_text() != text or not plugin_reads_site_file()
        time.sleep(1)  # the registries log a request when it is done
        up = registry.blob_traffic("registry", upstream, BENCH_REPO)
        mirrored = registry.blob_traffic("registry-mirror", mirror, BENCH_REPO)
        nodes, shared = entries_of(image.digest)
    finally:
        forget(image, bench_site)
    return {"setup": setup, "nodes": count, "image_bytes": image.layer_bytes, "seconds_to_all_started": seconds,
            "first_lines_s": firsts, "upstream_blob_bytes": up.bytes, "upstream_blob_gets": up.total,
            "mirror_blob_bytes": mirrored.bytes, "mirror_blob_gets": mirrored.total,
            "conversions": len(nodes) + shared, "node_cache_entries": len(nodes), "shared_store_entry": shared,
            "site_config_changed_during_run": disturbed}


def print_table(results: list[dict]) -> None:
    """Medians over the rounds, the seconds of every round beside them."""
    runs: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        runs.setdefault((r["setup"], r["nodes"]), []).append(r)
    print(f"\n{'setup':<8} {'N':>3} {'image MB':>9} {'upstream MB':>12} {'GETs':>5} {'mirror MB':>10} {'GETs':>5} "
          f"{'conversions':>11} {'all started s':>14}  rounds")
    by_setup: dict[str, dict[int, float]] = {}
    for (setup, count), rs in runs.items():
        def mid(key: str) -> float:
            return statistics.median(r[key] for r in rs)
        by_setup.setdefault(setup, {})[count] = mid("seconds_to_all_started")
        print(f"{setup:<8} {count:>3} {mid('image_bytes') / 1e6:>9.1f} {mid('upstream_blob_bytes') / 1e6:>12.1f} "
              f"{mid('upstream_blob_gets'):>5.0f} {mid('mirror_blob_bytes') / 1e6:>10.1f} "
              f"{mid('mirror_blob_gets'):>5.0f} "
              f"{mid('conversions'):>11.0f} {mid('seconds_to_all_started'):>14.1f}  "
              f"{[round(r['seconds_to_all_started'], 1) for r in rs]}"
              + ("  (site config reset during a round)" if any(r["site_config_changed_during_run"] for r in rs)
                 else ""))
    for setup, times in by_setup.items():
        if min(times) != max(times):
            print(f"{setup}: time to all started at N={max(times)} is {times[max(times)] / times[min(times)]:.2f}x "
                  f"N={min(times)} (target for the shared store: <= 1.3x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="2,4,8,16", help="node counts, comma-separated")
    parser.add_argument("--payload-mib", type=int, default=200, help="random bytes in the image, in MiB")
    parser.add_argument("--setups", default="neither,mirror,shared")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (each measures every setup and N once)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it switches the plugin's site config and reads the caches")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` too puts the sandbox's site config back
    counts = [int(n) for n in args.nodes.split(",")]
    texts = site_texts(args.setups.split(","))
    before = L.node_count()
    if before < max(counts):
        subprocess.run([sys.executable, "-m", "hpcctl", "sandbox", "up", "-q", "--no-images", "--nodes",
                        str(max(counts))], check=True)
    bench_site = Path(f"/var/tmp/hpcctl-bench-scale-site-{os.getpid()}.yaml")
    results = []
    try:
        for _ in range(args.repeat):
            for setup, text in texts.items():
                for count in counts:
                    result = measure(setup, text, count, args.payload_mib << 20, bench_site)
                    results.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        write_if_changed(L.SITE_FILE, REPO_SITE.read_text())
        bench_site.unlink(missing_ok=True)
        if before < max(counts):
            subprocess.run([sys.executable, "-m", "hpcctl", "sandbox", "up", "-q", "--no-images", "--nodes",
                            str(before)], check=True)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
