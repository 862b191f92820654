""".sif images without Apptainer, as hpcuser on the sandbox: srun, sbatch, salloc, a job spec and hpcctl run on
both nodes; Apptainer's env-script order, runscript and mounts; every refusal as the one line the user sees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from hpcctl.container.access import Identity
from hpcctl.container.sif_file import sif_image
from hpcctl.errors import HpcctlError
from hpcctl.image import sif
from hpcctl.sandbox import sif_writer
from hpcctl.sandbox.test_images import busybox_tree
from tests.conftest import hpcctl_cmd
from tests.integration.plugin_helpers import NO_MPI, srun, work

pytestmark = pytest.mark.integration
__all__ = ["work"]  # module fixture

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "sif-testdata"
# Apptainer sources the scripts in glob order: "2-..." comes after "10-..." (lexical, as `exec` does it)
ENV_SCRIPTS = {
    "01-base.sh": 'export ORDER=01\nexport PATH="/usr/local/bin:/usr/bin:/bin"\n',
    "10-docker2singularity.sh": 'export ORDER="$ORDER,10"\nexport FROM_IMAGE="image ${FROM_IMAGE:-unset}"\n',
    "2-late.sh": 'export ORDER="$ORDER,2"\n',
    "90-environment.sh": 'export ORDER="$ORDER,90"\nexport SLURM_JOB_ID=from-the-image\nexport TOUCHED=image\n',
    "99-base.sh": 'export ORDER="$ORDER,99"\n',
    "notes.txt": "export ORDER=never\n",
}
RUNSCRIPT = '#!/bin/sh\necho "runscript ran with: $*" >&2\nexport RUNSCRIPT_RAN=yes\nexec "$@"\n'
LABELS = {"org.label-schema.name": "sif-test", "maintainer": "hpcctl"}
REFUSED = "srun: error: --container-image: {path}: {message}"  # refused at submission, before the job is queued
ON_THE_NODE = "hpcctl: error: --container-image: {path}: {message}"


def own(path: Path) -> Path:
    shutil.chown(path, "hpcuser", "hpcuser")
    return path


@pytest.fixture(scope="module")
def app(work) -> Path:
    return own(sif_writer.singularity_sif(work / "app.sif", busybox_tree(), ENV_SCRIPTS, RUNSCRIPT, LABELS))


def lines(result) -> list[str]:
    return result.stdout.splitlines()


def test_srun_runs_a_sif_on_both_nodes_with_apptainers_environment(sandbox, work, app):
    r = srun(sandbox, "-N2", "-w", "n1,n2", f"--container-image={app}", NO_MPI, "sh", "-c",
             'echo "$SLURMD_NODENAME|$ORDER|$FROM_IMAGE|$SLURM_JOB_ID|$PATH|$APPTAINER_CONTAINER|'
             '$(grep -c . /.singularity.d/labels.json)|$(id -u)|$RUNSCRIPT_RAN"', cwd=work)
    assert r.returncode == 0, r.stderr
    rows = sorted(line.split("|") for line in lines(r))
    job_id = rows[0][3]
    assert job_id.isdigit()  # Slurm's variables are kept: the script's SLURM_JOB_ID is dropped
    assert rows == [[node, "01,10,2,90,99", "image unset", job_id, "/usr/local/bin:/usr/bin:/bin", str(app), "4",
                     "2001", ""] for node in ("n1", "n2")]


def test_the_sif_is_mounted_read_only_from_the_users_file_under_the_overlay(sandbox, work, app):
    (work / "data").mkdir(exist_ok=True)
    own(work / "data")
    r = srun(sandbox, f"--container-image={app}", NO_MPI, f"--container-mounts={work}/data:/data",
             "sh", "-c", "grep ' / ' /proc/self/mounts; echo hi > /data/out; ls /.singularity.d/env | tr '\\n' ' '; "
             "echo; touch /bin/new && echo root-writable", cwd=work)
    assert r.returncode == 0, r.stderr
    root, scripts, writable = lines(r)
    assert root.split()[2] == "overlay" and "nosuid" in root and "nodev" in root
    assert scripts.split() == sorted(ENV_SCRIPTS)
    assert writable == "root-writable"  # the overlay's upper layer, as for any image
    assert (work / "data/out").read_text() == "hi\n"
    assert (work / "app.sif").stat().st_size == app.stat().st_size


def test_container_entrypoint_runs_the_runscript(sandbox, work, app):
    with_runscript = srun(sandbox, f"--container-image={app}", NO_MPI, "--container-entrypoint",
                          "--container-entrypoint-log", "sh", "-c", 'echo "$RUNSCRIPT_RAN $ORDER"', cwd=work)
    assert with_runscript.returncode == 0, with_runscript.stderr
    assert with_runscript.stdout == "yes 01,10,2,90,99\n"
    assert "runscript ran with: sh -c kill -STOP $$ ; exit 0" in with_runscript.stderr


def test_site_and_user_environment_rules_stay_on_top_of_the_scripts(sandbox, work, app):
    r = srun(sandbox, f"--container-image={app}", NO_MPI, "--container-env=TOUCHED", "sh", "-c",
             'echo "$TOUCHED|$HPCCTL_IN_CONTAINER|$HPCCTL_SITE_NAME"', cwd=work, env={"TOUCHED": "host"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "host|1|sandbox\n"


def test_sbatch_and_its_steps_run_the_sif(sandbox, app):
    job = sandbox.sbatch("#!/bin/sh\n"
                         f"#SBATCH --container-image={app}\n"
                         f"#SBATCH {NO_MPI}\n#SBATCH -N2 -w n1,n2\n"
                         'echo "batch $ORDER $APPTAINER_NAME"\n'
                         'srun sh -c \'echo "step $SLURMD_NODENAME $ORDER"\' | sort\n')
    assert job.state == "COMPLETED", job.output
    assert job.output == "batch 01,10,2,90,99 app.sif\nstep n1 01,10,2,90,99\nstep n2 01,10,2,90,99\n"


def test_salloc_then_srun_runs_the_sif(sandbox, work, app):
    r = sandbox.run(["salloc", "-N1", f"--container-image={app}", NO_MPI, "srun", "sh", "-c", "echo $ORDER"],
                    user=sandbox.user, cwd=work, check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "01,10,2,90,99"


def test_a_job_spec_runs_a_sif_named_by_a_relative_path(sandbox, work, app):
    (work / "job.yaml").write_text("name: sif-spec\nimage: ./app.sif\n"
                                   'command: echo "spec $ORDER $(cat /.singularity.d/runscript | wc -l)"\n')
    own(work / "job.yaml")
    result = sandbox.run(hpcctl_cmd("submit", "--wait", "job.yaml"), user=sandbox.user, cwd=work, timeout=180,
                         env={"XDG_DATA_HOME": str(work / "data-spec")}, check=False)
    assert result.returncode == 0, result.stderr
    assert "spec 01,10,2,90,99 4" in result.stdout + "".join(p.read_text() for p in work.rglob("*.out"))


def test_hpcctl_run_runs_the_runscript_without_a_command(sandbox, work, app):
    r = subprocess.run(hpcctl_cmd("run", "--user", "hpcuser", "--mpi", "none", str(app)), capture_output=True,
                       text=True, cwd=work, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "runscript ran with: \n" in r.stderr
    r = subprocess.run(hpcctl_cmd("run", "--user", "hpcuser", "--mpi", "none", "--env", "TOUCHED", str(app), "sh",
                                  "-c", "echo $ORDER $RUNSCRIPT_RAN $TOUCHED"), capture_output=True, text=True,
                       cwd=work, timeout=120, env={**os.environ, "TOUCHED": "host"})
    assert r.returncode == 0 and r.stdout == "01,10,2,90,99 host\n", r.stderr  # --env wins, as --container-env


def test_site_explain_and_hpcctl_run_give_a_sif_the_same_plan(sandbox, work, app):
    def doc(*args: str) -> dict:
        return json.loads(sandbox.run(hpcctl_cmd(*args), env={"SUDO_USER": sandbox.user}, cwd=work).stdout)

    explained = doc("site", "explain", "--json", "--node", "n1", "--mpi", "none", "--image", str(app))
    planned = doc("run", "--plan-only", "--json", "--node", "n1", "--mpi", "none", str(app), "--", "true")
    assert explained["plan"] == planned["plan"]
    plan = planned["plan"]
    assert (plan["image"], plan["image_user_file"], plan["image_offset"]) == (str(app), True, 32768)
    assert plan["image_size"] == app.stat().st_size - 32768 and plan["entrypoint"][:2] == ["/bin/sh", "-c"]


def test_image_inspect_shows_the_sifs_metadata_as_the_user(sandbox, work, app):
    r = sandbox.run(hpcctl_cmd("image", "inspect", "--json", str(app)), user=sandbox.user, cwd=work)
    found = json.loads(r.stdout)
    assert (found["format"], found["architecture"], found["labels"]) == ("sif", sif.node_arch(), LABELS)
    assert [s["name"] for s in found["env_scripts"]] == sorted(n for n in ENV_SCRIPTS if n.endswith(".sh"))
    assert found["runscript"] == RUNSCRIPT and found["sif"]["runnable"] and found["size"] == app.stat().st_size


# --- refusals: the one line a user sees, before anything is mounted -----------------------------------------
def refused(sandbox, work, path: Path) -> str:
    r = srun(sandbox, f"--container-image={path}", NO_MPI, "true", cwd=work)
    assert r.returncode != 0
    return [line for line in r.stderr.splitlines() if "error: --container-image" in line][0]


def test_an_ext3_sif_is_refused(sandbox, work):
    path = own(sif_writer.write(work / "ext3.sif", [sif_writer.partition((TESTDATA / "input/root.ext3").read_bytes(),
                                                                         sif_writer.FS_EXT3)]))
    assert refused(sandbox, work, path) == REFUSED.format(path=path, message=(
        "the .sif's system partition is an ext3 file system (a writable Singularity 2 image); hpcctl runs squashfs "
        "partitions only (convert it once: `apptainer build new.sif old.sif`)"))


def test_sbatch_refuses_a_bad_sif_before_the_job_is_queued(sandbox, work):
    path = own(sif_writer.write(work / "ext3-batch.sif", [sif_writer.partition(
        (TESTDATA / "input/root.ext3").read_bytes(), sif_writer.FS_EXT3)]))
    (work / "job.sh").write_text(f"#!/bin/sh\n#SBATCH --container-image={path}\ntrue\n")
    r = sandbox.run(["sbatch", "--parsable", "job.sh"], user=sandbox.user, cwd=work, check=False)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.startswith(f"sbatch: error: --container-image: {path}: the .sif's system partition is an ext3 "
                               "file system"), r.stderr


def test_an_encrypted_sif_is_refused(sandbox, work):
    path = own(sif_writer.write(work / "enc.sif", [sif_writer.partition(b"\0" * 4096, sif_writer.FS_ENCRYPTED)]))
    assert refused(sandbox, work, path) == REFUSED.format(path=path, message=(
        "the .sif's system partition is an encrypted squashfs, which hpcctl cannot decrypt (rebuild the image "
        "without --encrypt)"))


def test_a_sif_without_a_system_partition_is_refused(sandbox, work):
    path = own(Path(shutil.copy(TESTDATA / "images/one-object-generic-json.sif", work / "json.sif")))
    assert refused(sandbox, work, path) == REFUSED.format(path=path, message=(
        "the .sif has no primary system partition (found: JSON.Generic) (build the image with `apptainer build`, "
        "which writes one)"))


def test_a_truncated_sif_is_refused(sandbox, work, app):
    path = work / "cut.sif"
    path.write_bytes(app.read_bytes()[:20000])
    own(path)
    assert refused(sandbox, work, path) == REFUSED.format(path=path, message=(
        "the .sif is truncated: its descriptor table ends at byte 32176, the file has 20000 (copy the file again "
        "in full)"))


def test_a_sif_for_another_architecture_is_refused(sandbox, work):
    """The submit host need not be a compute node: the architecture is checked by each node."""
    path = own(Path(shutil.copy(TESTDATA / "images/one-group.sif", work / "i386.sif")))
    assert refused(sandbox, work, path) == ON_THE_NODE.format(path=path, message=(
        f"the .sif is built for 386, this node is {sif.node_arch()} (use an image built for {sif.node_arch()})"))


@pytest.fixture
def root_only_dir():
    """Outside the tests' work directories, which each new one chowns to the user."""
    path = Path(tempfile.mkdtemp(prefix="hpcctl-sif-", dir="/srv"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


def test_a_sif_the_user_cannot_read_is_refused_before_anything_is_mounted(sandbox, work, app, root_only_dir):
    path = Path(shutil.copy(app, root_only_dir / "root-only.sif"))
    os.chmod(path, 0o600)  # root could read it, the user cannot
    assert refused(sandbox, work, path) == (f"srun: error: --container-image: {path} is not readable by you "
                                            "(pass a squashfs file that exists on the compute nodes and that you "
                                            "can read)")
    # the node's core, if asked anyway, opens it as the user: refused before any loop device or mount
    with pytest.raises(HpcctlError) as caught:
        sif_image(str(path), str(path), Identity(2001, 2001, (2001,)))
    assert str(caught.value) == (f"--container-image: {path}: permission denied (pass a .sif file that exists on "
                                 "the compute nodes and that you can read)")
    backing = [p.read_text().strip() for p in Path("/sys/block").glob("loop*/loop/backing_file")]
    assert str(path) not in backing  # no loop device was ever set up on it
