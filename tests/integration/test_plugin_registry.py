"""Registry images through the node cache: image ENV, pyxis '#' references, entrypoints, pinning at submit."""

import uuid

import pytest

from tests.integration.plugin_helpers import (
    NO_MPI,
    entrypoint_image,
    job_across_a_retag,
    push_busybox_variant,
    srun,
    work,
)

pytestmark = pytest.mark.integration
__all__ = ["entrypoint_image", "work"]  # module fixtures


def test_registry_image_with_its_environment(sandbox, work):
    for ref in (f"{sandbox.registry}/hpcctl/busybox:latest", f"{sandbox.registry}#hpcctl/busybox:latest"):
        r = srun(sandbox, f"--container-image={ref}", NO_MPI, "sh", "-c", "echo $HPCCTL_TEST_IMAGE", cwd=work)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "busybox"


def test_entrypoint_runs_only_when_asked(sandbox, work, entrypoint_image):
    image = f"--container-image={entrypoint_image}"
    show = ["sh", "-c", "echo task $ENTRYPOINT_RAN"]
    r = srun(sandbox, image, NO_MPI, "--container-entrypoint", *show, cwd=work)
    assert r.stdout.split() == ["task", "yes"], r.stderr
    r = srun(sandbox, image, NO_MPI, "--no-container-entrypoint", *show, cwd=work)
    assert r.stdout.split() == ["task"], r.stderr


def test_tag_is_pinned_at_submit_time(sandbox, work):
    repo = f"hpcctl/plugin-pin-{uuid.uuid4().hex[:8]}"
    push_busybox_variant(sandbox.registry, repo, "latest", ["PIN_VERSION=1"])
    script = work / "pin.sh"
    script.write_text("#!/bin/sh\necho version=$PIN_VERSION\n")
    sandbox.run(["chown", f"{sandbox.user}:{sandbox.user}", str(script)])
    submitted = sandbox.run(["sbatch", "--parsable", "--hold", f"--output={work}/pin-%j.out",
                             f"--container-image={sandbox.registry}/{repo}:latest", NO_MPI, str(script)],
                            user=sandbox.user, cwd=work)
    job_id = submitted.stdout.strip().split(";")[0]
    push_busybox_variant(sandbox.registry, repo, "latest", ["PIN_VERSION=2"])  # the tag moves while it waits
    sandbox.run(["scontrol", "release", job_id], user=sandbox.user)
    state, _ = sandbox.wait(job_id)
    output = (work / f"pin-{job_id}.out").read_text()
    assert state == "COMPLETED", output
    assert output.strip() == "version=1"
    r = srun(sandbox, f"--container-image={sandbox.registry}/{repo}:latest", NO_MPI, "sh", "-c",
             "echo version=$PIN_VERSION", cwd=work)
    assert r.stdout.strip() == "version=2", r.stderr  # a new submission sees the moved tag


def test_retag_while_the_job_runs_changes_none_of_its_steps(sandbox, work):
    repo = f"hpcctl/plugin-retag-{uuid.uuid4().hex[:8]}"
    state, output = job_across_a_retag(
        sandbox, work, repo,
        "#!/bin/sh\necho batch=$PIN_VERSION\nwhile [ ! -e {retagged} ]; do sleep 0.1; done\n"
        "srun -N2 -n2 sh -c 'echo step=$PIN_VERSION'\n"
        f"srun -N1 -n1 --container-image={sandbox.registry}/{repo}:latest sh -c 'echo named=$PIN_VERSION'\n",
        "-N2", "-n2", f"--container-image={sandbox.registry}/{repo}:latest", NO_MPI)
    assert state == "COMPLETED", output
    assert output.split() == ["batch=1", "step=1", "step=1", "named=1"]


@pytest.mark.parametrize("ref, words", [
    ("127.0.0.1:5000/hpcctl/does-not-exist:latest", "does-not-exist"),
    ("127.0.0.1:5999/hpcctl/busybox:latest", "127.0.0.1:5999"),
])
def test_bad_reference_or_registry_down_is_one_line_at_submit(sandbox, work, ref, words):
    r = srun(sandbox, f"--container-image={ref}", NO_MPI, "true", cwd=work, timeout=180)
    assert r.returncode != 0
    lines = r.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("srun: error: ") and words in lines[0], r.stderr


def test_steps_of_a_job_run_the_image_its_first_srun_pinned(sandbox, work):
    """No --container-image at submit: the job's first srun pins the tag, and its later sruns keep that image."""
    repo = f"hpcctl/plugin-steppin-{uuid.uuid4().hex[:8]}"
    image = f"--container-image={sandbox.registry}/{repo}:latest"
    state, output = job_across_a_retag(
        sandbox, work, repo,
        f"#!/bin/sh\nsrun {image} {NO_MPI} sh -c 'echo first=$PIN_VERSION'\n"
        "while [ ! -e {retagged} ]; do sleep 0.1; done\n"
        f"srun {image} {NO_MPI} sh -c 'echo later=$PIN_VERSION'\n")
    assert state == "COMPLETED", output
    assert output.split() == ["first=1", "later=1"]
    job = sandbox.sbatch(f"#!/bin/sh\nsrun {image} {NO_MPI} sh -c 'echo next-job=$PIN_VERSION'\n")
    assert job.output.split() == ["next-job=2"], job.output
