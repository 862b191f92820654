"""`oras://` images (issue 15): a .sif pushed to the sandbox registry as an ORAS artifact by `hpcctl image push`, laid
out as `apptainer push oras://` lays it out, run with `srun --container-image=oras://...` as the sandbox user on both
nodes with Singularity's semantics; a corrupted blob, a container image and a .sif pulled as a container image are
refused in one line each, with nothing left in the cache."""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from hpcctl.sandbox import layout as L
from hpcctl.sandbox.sif_writer import singularity_sif
from hpcctl.sandbox.test_images import busybox_tree
from tests.conftest import hpcctl_cmd
from tests.integration.plugin_helpers import NO_MPI, srun
from tests.integration.shared_store_helpers import point_plugin_at

pytestmark = pytest.mark.integration

REGISTRY_STORAGE = L.STATE_DIR / "registry"  # the open registry's (127.0.0.1:5000) blob store
EMPTY_CONFIG_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # of "{}"


def make_sif(path: Path, marker: str) -> Path:
    """busybox with two env scripts (applied in numeric order), a runscript and labels; ``marker`` makes it unique."""
    return singularity_sif(path, busybox_tree(),
                           env_scripts={"10-base.sh": f"export ORAS_MARKER={marker}\nexport ORDER=first\n",
                                        "90-environment.sh": "export ORDER=\"$ORDER then second\"\n"},
                           runscript='#!/bin/sh\necho "runscript: $*"\n', labels={"marker": marker})


def hpcctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(hpcctl_cmd(*args), capture_output=True, text=True, timeout=timeout)


def push(sandbox, tmp_path: Path, repo: str) -> tuple[str, str]:
    """A fresh .sif pushed as REGISTRY/REPO:TAG; (oras:// reference, its layer's digest)."""
    marker = uuid.uuid4().hex[:12]
    sif = make_sif(tmp_path / f"{marker}.sif", marker)
    ref = f"oras://{sandbox.registry}/{repo}:{marker}"
    r = hpcctl("image", "push", str(sif), ref)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"pushed {sif} as {ref}@sha256:")
    manifest = registry_manifest(sandbox, repo, marker)
    return ref, manifest["layers"][0]["digest"]


def registry_manifest(sandbox, repo: str, tag: str) -> dict:
    request = urllib.request.Request(f"http://{sandbox.registry}/v2/{repo}/manifests/{tag}",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def pushed(sandbox, tmp_path_factory):
    return push(sandbox, tmp_path_factory.mktemp("oras"), "hpcctl-test/oras-sif")


def test_the_pushed_artifact_is_laid_out_as_apptainer_pushes_it(sandbox, pushed):
    ref, layer_digest = pushed
    repo, tag = ref.removeprefix(f"oras://{sandbox.registry}/").split(":")
    manifest = registry_manifest(sandbox, repo, tag)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"] == {"mediaType": "application/vnd.sylabs.sif.config.v1+json",
                                  "digest": EMPTY_CONFIG_DIGEST, "size": 2}
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.sylabs.sif.layer.v1.sif" and layer["digest"] == layer_digest
    assert layer["annotations"] == {"org.opencontainers.image.title": f"{tag}.sif"}


def test_srun_runs_an_oras_sif_on_both_nodes_with_singularity_semantics(sandbox, pushed):
    ref, _ = pushed
    r = srun(sandbox, "-N2", "-n2", f"--container-image={ref}", NO_MPI, "sh", "-c",
             'echo "$ORAS_MARKER|$ORDER|$SLURM_PROCID"; /.singularity.d/runscript a b; id -un',
             cwd=sandbox.workdir(), timeout=180)
    assert r.returncode == 0, r.stderr
    marker = ref.rsplit(":", 1)[1]
    assert sorted(r.stdout.splitlines()) == sorted(
        [f"{marker}|first then second|0", f"{marker}|first then second|1", "runscript: a b", "runscript: a b",
         sandbox.user, sandbox.user])


def test_sbatch_runs_an_oras_sif_pinned_at_submit(sandbox, pushed):
    ref, _ = pushed
    job = sandbox.sbatch("#!/bin/sh\n"
                         f"#SBATCH --container-image={ref} --container-mpi=none\n"
                         'echo "batch $ORAS_MARKER|$ORDER|$(id -un)"\n')
    assert job.state == "COMPLETED", job.output
    assert job.output == f"batch {ref.rsplit(':', 1)[1]}|first then second|{sandbox.user}\n"


def test_pull_caches_the_sif_with_its_runscript_as_cmd(sandbox, pushed):
    ref, _ = pushed
    r = hpcctl("image", "pull", "--node", "n1", "--json", ref)
    assert r.returncode == 0, r.stderr
    image = json.loads(r.stdout)
    assert image["reference"].startswith(ref) and image["config"]["Cmd"] == ["/.singularity.d/runscript"]
    meta = json.loads(Path(image["path"]).with_suffix(".json").read_text())
    assert meta["source"] == "sif" and meta["sif_offset"] > 0 and meta["sif_size"] == image["size"]
    with open(image["path"], "rb") as sif:
        sif.seek(meta["sif_offset"])
        assert sif.read(4) == b"hsqs"


def test_a_corrupted_blob_is_refused_by_its_digest_and_nothing_is_cached(sandbox, tmp_path):
    ref, layer_digest = push(sandbox, tmp_path, "hpcctl-test/oras-corrupt")
    hexdigest = layer_digest.removeprefix("sha256:")
    blob = REGISTRY_STORAGE / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only the digest can tell
    blob.write_bytes(bytes(data))
    r = srun(sandbox, f"--container-image={ref}", NO_MPI, "true", cwd=sandbox.workdir(), timeout=180)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("hpcctl: error:")]  # the node's one line
    assert len(errors) == 1 and f"layer {layer_digest} from {sandbox.registry} arrived as" in errors[0], r.stderr
    r = hpcctl("image", "ls", "--json")
    assert not [image for image in json.loads(r.stdout or "[]") if image["reference"].startswith(ref)]


def test_a_container_image_is_not_an_oras_sif_at_submit_nor_from_a_nodes_cache(sandbox):
    ref = f"oras://{sandbox.registry}/hpcctl/busybox:latest"
    r = srun(sandbox, f"--container-image={ref}", NO_MPI, "true", cwd=sandbox.workdir(), timeout=180)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [  # pinning the tag at submit reads the manifest: refused there
        f"srun: error: {ref} is not a SIF pushed as an ORAS artifact: its manifest has "
        "application/vnd.oci.image.layer.v1.tar+gzip, application/vnd.oci.image.layer.v1.tar+gzip, not one layer of "
        "application/vnd.sylabs.sif.layer.v1.sif (pull a container image without oras://; push a .sif with "
        "`hpcctl image push` or `apptainer push`)"]
    digest = json.loads(hpcctl("image", "resolve", "--json", ref.removeprefix("oras://")).stdout)["digest"]
    hpcctl("image", "pull", "--node", "n1", f"{ref.removeprefix('oras://')}@{digest}")
    # pinned by digest, it reaches the node, where the cached container image is not handed out for it
    r = srun(sandbox, "-w", "n1", f"--container-image={ref}@{digest}", NO_MPI, "true", cwd=sandbox.workdir(),
             timeout=180)
    assert r.returncode != 0
    [line] = [line for line in r.stderr.splitlines() if line.startswith("hpcctl: error:")]  # the node's line
    assert line.startswith(f"hpcctl: error: {ref}@sha256:") and "is not a SIF pushed as an ORAS artifact: " in line
    r = hpcctl("image", "pull", "--node", "n1", ref)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_an_oras_sif_pulled_as_a_container_image_says_to_use_oras(sandbox, pushed):
    ref, _ = pushed
    plain = ref.removeprefix("oras://")
    r = hpcctl("image", "pull", "--node", "n1", plain)  # the .sif is in n1's cache by now
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        f"hpcctl: error: {plain} is a .sif stored as an ORAS artifact, not a container image "
        f"(pull it as oras://{plain})"]
    r = hpcctl("image", "pull", "--node", "n3", plain)  # not cached there
    assert r.returncode != 0 and "is a .sif stored as an ORAS artifact" in r.stderr, r.stderr


def test_a_user_pushes_a_private_sif_and_runs_it_with_their_own_credentials(sandbox, tmp_path):
    """Push and pull both go through the registry client with the user's credentials file; without it, one line."""
    home = Path(pwd.getpwnam(sandbox.user).pw_dir)
    work = sandbox.workdir()
    marker = uuid.uuid4().hex[:12]
    sif = make_sif(work / "private.sif", marker)
    shutil.chown(sif, sandbox.user, sandbox.user)
    ref = f"oras://{sandbox.auth_registry}/private/oras-sif:{marker}"
    netrc = home / ".config/enroot/.credentials"
    sandbox.run(["mkdir", "-p", str(netrc.parent)], user=sandbox.user)
    sandbox.run(["sh", "-c", f"umask 077; echo 'machine {sandbox.auth_registry} login {sandbox.auth_user} "
                             f"password {sandbox.auth_password}' > {netrc}"], user=sandbox.user)
    try:
        pushed = sandbox.run(hpcctl_cmd("image", "push", str(sif), ref), user=sandbox.user, cwd=work, timeout=120)
        assert pushed.stdout.startswith(f"pushed {sif} as {ref}@sha256:")
        r = srun(sandbox, "-w", "n2", f"--container-image={ref}", NO_MPI, "sh", "-c", "echo $ORAS_MARKER",
                 cwd=work, timeout=180)
        assert r.returncode == 0 and r.stdout == f"{marker}\n", r.stderr
    finally:
        netrc.unlink()
    r = srun(sandbox, "-w", "n2", f"--container-image={ref}", NO_MPI, "true", cwd=work, timeout=180)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        f"srun: error: registry {sandbox.auth_registry} needs credentials for private/oras-sif and none were found "
        "(add them to ~/.config/enroot/.credentials (machine HOST login USER password PASS) or log in with docker "
        "login)"]


def test_push_refuses_what_is_not_a_sif_in_one_line_before_sending_anything(sandbox, tmp_path):
    text = tmp_path / "notes.sif"
    text.write_text("not a sif\n" * 20)
    ref = f"oras://{sandbox.registry}/hpcctl-test/never:v1"
    for path, says in ((text, "not a SIF file: no SIF_MAGIC at byte 32"), (tmp_path, "is not a regular file")):
        r = hpcctl("image", "push", str(path), ref)
        assert r.returncode != 0
        [line] = r.stderr.strip().splitlines()
        assert line.startswith(f"hpcctl: error: {path}") and says in line, line
    r = hpcctl("image", "push", str(text), f"{sandbox.registry}/hpcctl-test/never:v1")
    assert r.returncode != 0 and "is not an oras:// reference" in r.stderr


def test_an_oras_sif_runs_from_the_shared_image_store(sandbox, tmp_path):
    """With cache.shared (issue 14) the .sif is kept once for the cluster and still mounted at its partition."""
    from hpcctl.sandbox import up, users
    users.ensure_store_account()
    up._shared_site_config()
    ref, _ = push(sandbox, tmp_path, "hpcctl-test/oras-shared")
    try:
        point_plugin_at(L.SHARED_SITE_FILE)
        r = srun(sandbox, "-N2", "-n2", f"--container-image={ref}", NO_MPI, "sh", "-c", 'echo "$ORAS_MARKER|$ORDER"',
                 cwd=sandbox.workdir(), timeout=180)
    finally:
        point_plugin_at(L.SITE_FILE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{ref.rsplit(':', 1)[1]}|first then second"] * 2
