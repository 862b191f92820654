"""The sandbox behaves like a cluster (issue 14): N slurmd nodes (`hpcctl sandbox up --nodes N`), a node-local image
cache per node (cache.root with %n), and a pull-through registry mirror whose upstream access log shows what it
served. Registry traffic is counted in the registries' own access logs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpcctl.sandbox import cold_image, registry
from hpcctl.sandbox import layout as L
from hpcctl.sandbox.up import REPO_SITE
from tests.integration.plugin_helpers import srun

NODE_CACHES = Path("/var/lib/hpcctl/nodes")


HPCCTL = (sys.executable, "-m", "hpcctl")


def hpcctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*HPCCTL, *args], capture_output=True, text=True, check=check, timeout=600)


def status() -> dict:
    return json.loads(hpcctl("sandbox", "status", "--json").stdout)


def cached_on(image: cold_image.ColdImage) -> list[str]:
    """The nodes whose own cache holds ``image``, in node order."""
    key = image.digest.split(":", 1)[1]
    found = [p.parts[-4] for p in NODE_CACHES.glob(f"*/cache/images/{key}.json")]
    return sorted(found, key=lambda n: int(n[1:]))


def partitions() -> dict[str, str]:
    """{partition: its node count} (sinfo would print a line per node state)."""
    out = subprocess.run(["scontrol", "show", "partition", "-o"], capture_output=True, text=True, check=True).stdout
    return {re.search(r"PartitionName=(\S+)", line)[1]: re.search(r"TotalNodes=(\d+)", line)[1]
            for line in out.splitlines()}


def test_sandbox_up_keeps_its_node_count_and_refuses_one_it_cannot_run(sandbox):
    count = status()["node_count"]
    assert json.loads(L.SETTINGS_FILE.read_text()) == {"nodes": count}
    assert partitions() == {"debug": "2", "scale": str(count)}  # debug: n1, n2 (GPUs); scale: every node
    assert hpcctl("sandbox", "up", "-q").stdout == ""  # without --nodes: as many as before
    refused = hpcctl("sandbox", "up", "-q", "--nodes", "1", check=False)
    assert (refused.returncode, refused.stderr) == (
        1, "hpcctl: error: --nodes 1: the sandbox has 2 to 64 nodes (pass --nodes between 2 and 64)\n")
    assert status()["node_count"] == count and partitions()["scale"] == str(count)


def test_each_node_of_a_job_pulls_a_cold_image_into_its_own_cache(sandbox):
    image = cold_image.push("hpcctl-test/scale-cold", 1 << 20)
    since = registry.log_offset("registry")
    ran = srun(sandbox, "-N2", "-w", "n1,n2", f"--container-image={image.reference}", "sh", "-c",
               "echo $SLURMD_NODENAME", cwd=sandbox.workdir())
    assert ran.returncode == 0 and sorted(ran.stdout.split()) == ["n1", "n2"], ran.stderr
    assert cached_on(image) == ["n1", "n2"]
    # each node pulled for itself: what a mirror or the shared store (issue 14) saves
    served = registry.blob_traffic("registry", since, "hpcctl-test/scale-cold")
    assert served.gets == {blob: 2 for blob in image.blobs}


def test_image_commands_take_the_node_whose_cache_they_mean(sandbox):
    image = cold_image.push("hpcctl-test/scale-node", 4096)
    pulled = json.loads(hpcctl("image", "pull", "--json", "--node", "n2", image.reference).stdout)
    assert pulled["path"].startswith(str(NODE_CACHES / "n2" / "cache") + "/")
    assert cached_on(image) == ["n2"]
    listed = json.loads(hpcctl("image", "ls", "--json").stdout)  # every node of this host
    assert [row["cache"] for row in listed if row["digest"] == image.digest] == [str(NODE_CACHES / "n2" / "cache")]
    assert json.loads(hpcctl("image", "ls", "--json", "--node", "n1").stdout) == [
        row for row in listed if row["cache"] == str(NODE_CACHES / "n1" / "cache")]
    needed = hpcctl("image", "rm", image.reference, check=False)
    nodes = ", ".join(f"n{i}" for i in range(1, status()["node_count"] + 1))
    assert (needed.returncode, needed.stderr) == (
        1, f"hpcctl: error: this host runs {status()['node_count']} Slurm nodes, each with its own image cache "
           f"(/var/lib/hpcctl/nodes/%n/cache): say which (add --node NAME, one of: {nodes})\n")
    wrong = hpcctl("image", "rm", "--node", "../n1", image.reference, check=False)
    assert wrong.returncode == 1 and wrong.stderr.startswith("hpcctl: error: --node ../n1: not a Slurm node of this "
                                                             "host (name one of: n1, n2")
    hpcctl("image", "rm", "--node", "n2", image.reference)
    assert cached_on(image) == []


@pytest.fixture(scope="module")
def mirror_site(tmp_path_factory) -> Path:
    """The sandbox's site config with its pull-through mirror in front of its registry."""
    site = yaml.safe_load(REPO_SITE.read_text())
    site["registries"]["mirrors"] = {L.REGISTRY: [L.MIRROR]}
    path = tmp_path_factory.mktemp("mirror") / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def test_behind_the_mirror_the_upstream_registry_serves_each_blob_once(sandbox, mirror_site):
    """Two nodes pull a cold image through the mirror at the same moment: the upstream serves each blob once (the
    mirror's cache lock holds the second request until the first fetch is cached); a third node costs it nothing."""
    image = cold_image.push("hpcctl-test/scale-mirror", 1 << 20)
    upstream, mirror = registry.log_offset("registry"), registry.log_offset("registry-mirror")
    pulls = [subprocess.Popen([*HPCCTL, "--site", str(mirror_site), "image", "pull", "--json", "--node", node,
                               image.reference], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for node in ("n1", "n2")]
    for pull in pulls:
        _, err = pull.communicate(timeout=300)
        assert pull.returncode == 0, err
    assert cached_on(image) == ["n1", "n2"]
    assert registry.blob_traffic("registry-mirror", mirror, "hpcctl-test/scale-mirror").gets == {
        blob: 2 for blob in image.blobs}  # the mirror served both nodes
    assert registry.blob_traffic("registry", upstream, "hpcctl-test/scale-mirror").gets == {
        blob: 1 for blob in image.blobs}
    assert all(registry.mirror_cache_file("hpcctl-test/scale-mirror", blob).exists() for blob in image.blobs)
    again = registry.log_offset("registry")
    hpcctl("--site", str(mirror_site), "image", "pull", "--json", "--node", "n3" if status()["node_count"] > 2
           else "n1", image.reference)
    assert registry.blob_traffic("registry", again, "hpcctl-test/scale-mirror").gets == {}


@pytest.fixture(scope="module")
def sixteen_nodes(sandbox):
    """At least 16 nodes: CI starts them (`sandbox up --nodes 16`); elsewhere they are started here and stopped
    after."""
    before = status()["node_count"]
    if before < 16:
        hpcctl("sandbox", "up", "-q", "--no-images", "--nodes", "16")
    yield
    if before < 16:
        hpcctl("sandbox", "up", "-q", "--no-images", "--nodes", str(before))


@pytest.mark.slow16
def test_a_sixteen_node_job_starts_a_cold_image_on_every_node(sandbox, sixteen_nodes):
    image = cold_image.push("hpcctl-test/scale-16", 1 << 20)
    since = registry.log_offset("registry")
    ran = srun(sandbox, "-p", L.SCALE_PARTITION, "-N16", "-w", "n[1-16]", f"--container-image={image.reference}",
               "sh", "-c", "echo $SLURMD_NODENAME", cwd=sandbox.workdir(), timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert sorted(ran.stdout.split(), key=lambda n: int(n[1:])) == [f"n{i}" for i in range(1, 17)]
    assert cached_on(image) == [f"n{i}" for i in range(1, 17)]
    assert registry.blob_traffic("registry", since, "hpcctl-test/scale-16").gets == {b: 16 for b in image.blobs}
