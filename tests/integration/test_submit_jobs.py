"""`hpcctl submit` on the sandbox as hpcuser: real specs, real jobs, their real output, states and run bundles."""

import json
import re
from pathlib import Path

import pytest

from tests.conftest import hpcctl_cmd

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def hpcctl(sandbox, work: Path, *args: str, env: dict | None = None, check: bool = True, timeout: float = 180):
    """Run hpcctl as hpcuser in ``work``, with run bundles kept under work/data."""
    return sandbox.run(hpcctl_cmd(*args), user=sandbox.user, cwd=work, check=check, timeout=timeout,
                       env={"XDG_DATA_HOME": str(work / "data"), **(env or {})})


@pytest.fixture
def work(sandbox):
    """A fresh directory owned by hpcuser; every job submitted from it is cancelled at the end if still there."""
    path = sandbox.workdir()
    yield path
    runs = path / "data" / "hpcctl" / "runs"
    ids = [json.loads((b / "run.json").read_text())["job_id"] for b in runs.iterdir()] if runs.is_dir() else []
    if ids:
        sandbox.run(["scancel", *ids], check=False)


def spec(work: Path, name: str, text: str) -> str:
    (work / name).write_text(text)
    return name


def bundle_record(work: Path, job_id: str) -> tuple[Path, dict]:
    for path in (work / "data" / "hpcctl" / "runs").iterdir():
        record = json.loads((path / "run.json").read_text())
        if record["job_id"] == job_id:
            return path, record
    raise AssertionError(f"no run bundle for job {job_id}")


def test_hello_example_waits_and_prints_its_output(sandbox, work):
    result = hpcctl(sandbox, work, "submit", str(REPO / "examples" / "hello.yaml"), "--wait")
    job_id = re.match(r"Submitted job (\d+) \(hello\); run bundle (\S+)\n", result.stdout).group(1)
    assert f"==> {job_id} hello COMPLETED exit 0:0 ({work}/hello-{job_id}.out) <==\n" in result.stdout
    assert re.search(rf'^hello from job {job_id} on n[12] as \S+ in NAME="hpcctl busybox test image"$', result.stdout,
                     re.MULTILINE), result.stdout

    bundle, record = bundle_record(work, job_id)
    assert sorted(p.name for p in bundle.iterdir()) == ["job.sh", "run.json", "site.yaml", "spec.yaml"]
    assert record["argv"] == ["sbatch", "--parsable", str(bundle / "job.sh")]
    assert record["cluster"] == "sandbox" and record["workdir"] == str(work) and record["hpcctl_version"]
    assert record["image"] == "127.0.0.1:5000/hpcctl/busybox:latest"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", record["image_digest"])
    assert "#SBATCH --container-image=127.0.0.1:5000\\#hpcctl/busybox:latest\n" in (bundle / "job.sh").read_text()
    assert (bundle / "spec.yaml").read_text() == (REPO / "examples" / "hello.yaml").read_text()

    status = json.loads(hpcctl(sandbox, work, "status", str(bundle), "--json").stdout)
    assert [(j["job_id"], j["state"]) for j in status[job_id]] == [(job_id, "COMPLETED")]
    assert "hello from" in hpcctl(sandbox, work, "logs", job_id).stdout
    listing = json.loads(hpcctl(sandbox, work, "list", "--json").stdout)
    assert listing[0]["job_id"] == job_id and listing[0]["state"] == "COMPLETED"


def test_gpu_job_sees_the_gpu_slurm_gave_it(sandbox, work):
    result = hpcctl(sandbox, work, "submit", str(REPO / "examples" / "gpu.yaml"), "--wait")
    job_id = re.match(r"Submitted job (\d+) \(gpu-check\)", result.stdout).group(1)
    assert f"==> {job_id} gpu-check COMPLETED exit 0:0 ({work}/gpu-check-{job_id}.out) <==\n" in result.stdout
    assert re.search(r"^CUDA_VISIBLE_DEVICES=[01] on n[12]$", result.stdout, re.MULTILINE), result.stdout


def test_two_node_mpi_job_in_a_container(sandbox, work):
    result = hpcctl(sandbox, work, "submit", "--wait", str(REPO / "examples" / "mpi.yaml"))
    job_id = re.match(r"Submitted job (\d+) \(mpi-ranks\)", result.stdout).group(1)
    assert f"==> {job_id} mpi-ranks COMPLETED exit 0:0 ({work}/mpi-ranks-{job_id}.out) <==\n" in result.stdout
    ranks = sorted(re.findall(r"^rank (\d) of 4 on (n[12])$", result.stdout, re.MULTILINE))
    assert ranks == [("0", "n1"), ("1", "n1"), ("2", "n2"), ("3", "n2")], result.stdout


def test_missing_image_stops_the_submission(sandbox, work):
    name = spec(work, "t.yaml", f"name: t\nimage: {sandbox.registry}/hpcctl/busybox:no-such-tag\ncommand: 'true'\n")
    result = hpcctl(sandbox, work, "submit", name, check=False)
    assert result.returncode == 1
    assert result.stderr == (f"hpcctl: error: hpcctl/busybox:no-such-tag not found in registry {sandbox.registry} "
                             "(check the image name and tag (or digest))\n")
    assert not (work / "data").exists()


def test_array_runs_every_task_with_its_own_output(sandbox, work):
    result = hpcctl(sandbox, work, "submit", "--wait", str(REPO / "examples" / "array.yaml"))
    job_id = re.match(r"Submitted job (\d+) \(sweep\)", result.stdout).group(1)
    for task in range(4):
        out = work / f"sweep-{job_id}_{task}.out"
        assert f"==> {job_id}_{task} sweep COMPLETED exit 0:0 ({out}) <==\n" in result.stdout
        assert out.read_text() == f"task {task} of array {job_id}, learning rate 0.0{task}\n"
    status = json.loads(hpcctl(sandbox, work, "status", job_id, "--json").stdout)[job_id]
    assert sorted((t["job_id"], t["state"]) for t in status) == [(f"{job_id}_{i}", "COMPLETED") for i in range(4)]
    task_log = hpcctl(sandbox, work, "logs", f"{job_id}_2").stdout
    assert task_log.endswith(f"task 2 of array {job_id}, learning rate 0.02\n")


def test_pipeline_runs_in_dependency_order(sandbox, work):
    result = hpcctl(sandbox, work, "submit", "--json", str(REPO / "examples" / "pipeline.yaml"))
    jobs = {j["name"]: j for j in json.loads(result.stdout)}
    assert list(jobs) == ["prepare", "train", "report"]
    assert jobs["train"]["command"][2] == f"--dependency=afterok:{jobs['prepare']['job_id']}"
    assert jobs["report"]["command"][2] == f"--dependency=afterany:{jobs['train']['job_id']}"
    ids = [j["job_id"] for j in jobs.values()]
    for job_id in ids:
        state, _ = sandbox.wait(job_id)
        assert state == "COMPLETED"
    status = json.loads(hpcctl(sandbox, work, "status", *ids, "--json").stdout)
    assert [(j["job_id"], j["name"], j["state"], j["exit_code"]) for i in ids for j in status[i]] == [
        (ids[0], "prepare", "COMPLETED", "0:0"), (ids[1], "train", "COMPLETED", "0:0"),
        (ids[2], "report", "COMPLETED", "0:0")]
    assert (work / f"report-{ids[2]}.out").read_text() == "report after train:\ndata ready\ntrained\n"
    _, record = bundle_record(work, ids[1])
    assert record["dependencies"] == {"afterok": [ids[0]]}


def test_failed_dependency_stops_the_rest_of_the_pipeline(sandbox, work):
    name = spec(work, "p.yaml", "- {name: step1, command: 'exit 3'}\n"
                                "- {name: step2, command: 'echo never', dependencies: {afterok: [step1]}}\n")
    result = hpcctl(sandbox, work, "submit", "--wait", "--timeout", "120", name, check=False)
    ids = re.findall(r"Submitted job (\d+)", result.stdout)
    assert result.returncode == 1
    assert f"hpcctl: job {ids[0]} (step1) ended FAILED (NonZeroExitCode), exit 3:0" in result.stderr
    assert f"hpcctl: job {ids[1]} (step2) ended PENDING (DependencyNeverSatisfied)" in result.stderr


def test_inherited_sbatch_variables_are_reported_and_left_out(sandbox, work):
    name = spec(work, "t.yaml", "name: envcheck\ncommand: echo partition=$SLURM_JOB_PARTITION\n")
    env = {"SBATCH_PARTITION": "nonexistent"}
    result = hpcctl(sandbox, work, "submit", "--wait", name, env=env)
    assert ("hpcctl: warning: SBATCH_PARTITION=nonexistent from your shell would change the partition "
            "(ignored; pass --keep-sbatch-env to apply it)") in result.stderr
    assert "partition=debug\n" in result.stdout
    kept = hpcctl(sandbox, work, "submit", "--keep-sbatch-env", name, env=env, check=False)
    assert kept.returncode == 3
    assert "(applies)" in kept.stderr
    assert "hpcctl: error: sbatch rejected the job: sbatch: error: invalid partition specified: nonexistent" \
        in kept.stderr


def test_test_only_and_dry_run_queue_nothing(sandbox, work):
    name = spec(work, "t.yaml", "name: probe\ncommand: 'true'\nresources: {nodes: 2}\n")
    test_only = hpcctl(sandbox, work, "submit", "--test-only", name)
    assert re.match(r"probe: sbatch: Job \d+ to start at \S+ using 2 processors on nodes n\[1-2\] in partition "
                    r"debug\n", test_only.stdout), test_only.stdout
    dry = hpcctl(sandbox, work, "submit", "--dry-run", name)
    assert dry.stdout.startswith("# sbatch --parsable <run bundle of probe>/job.sh\n#!/bin/sh\n")
    assert not (work / "data").exists()


def test_limits_are_checked_before_slurm_sees_the_job(sandbox, work):
    name = spec(work, "big.yaml", "name: big\ncommand: 'true'\nresources: {nodes: 4, time: '03:00:00'}\n")
    result = hpcctl(sandbox, work, "submit", name, check=False)
    assert result.returncode == 2
    assert "big.yaml:3: resources.time: time 03:00:00 exceeds partition 'debug' limit 01:00:00" in result.stderr
    assert "big.yaml:3: resources.nodes: 4 nodes exceed partition 'debug' limit of 2" in result.stderr
    assert not (work / "data").exists()


def test_parsable_wait_keeps_stdout_for_the_id_and_creates_the_output_directory(sandbox, work):
    name = spec(work, "t.yaml", "name: quiet\ncommand: echo done\noutputs: {stdout: logs/%x-%j.txt}\n")
    result = hpcctl(sandbox, work, "submit", "--parsable", "--wait", name)
    job_id = result.stdout.strip()
    assert result.stdout == f"{job_id}\n"
    assert f"==> {job_id} quiet COMPLETED exit 0:0 ({work}/logs/quiet-{job_id}.txt) <==\ndone\n" in result.stderr
    assert (work / "logs" / f"quiet-{job_id}.txt").read_text() == "done\n"
    unknown = hpcctl(sandbox, work, "status", "999999").stdout.splitlines()
    assert unknown[1].split() == ["999999", "UNKNOWN", "no", "longer", "known", "to", "Slurm", "(no", "accounting)"]


def test_logs_follow_and_cancel_by_bundle(sandbox, work):
    name = spec(work, "slow.yaml", "name: slow\nscript: |\n  echo first\n  sleep 2\n  echo second\n")
    job_id = hpcctl(sandbox, work, "submit", "--parsable", name).stdout.strip()
    assert hpcctl(sandbox, work, "logs", "-f", job_id, timeout=60).stdout == "first\nsecond\n"

    name = spec(work, "sleepy.yaml", "name: sleepy\ncommand: sleep 300\n")
    job_id = hpcctl(sandbox, work, "submit", "--parsable", name).stdout.strip()
    bundle, _ = bundle_record(work, job_id)
    assert hpcctl(sandbox, work, "cancel", str(bundle)).stdout == f"Cancelled {job_id}\n"
    state, _ = sandbox.wait(job_id, timeout=60)
    assert state == "CANCELLED"


def test_values_with_blanks_and_hash_reach_slurm_unchanged(sandbox, work):
    name = spec(work, "q.yaml", 'name: quoted\ncommand: echo ok\noutputs: {stdout: "my logs/%x-%j.out"}\n'
                                'sbatch_args: [\'--comment=run #3, "final"\']\n')
    job_id = hpcctl(sandbox, work, "submit", "--parsable", "--wait", name).stdout.strip()
    assert (work / "my logs" / f"quoted-{job_id}.out").read_text() == "ok\n"
    shown = sandbox.run(["scontrol", "show", "job", job_id]).stdout
    assert re.search(r'^ *Comment=run #3, "final" *$', shown, re.MULTILINE), shown


def test_wait_gives_up_after_its_timeout(sandbox, work):
    name = spec(work, "slow.yaml", "name: slow\ncommand: sleep 30\n")
    result = hpcctl(sandbox, work, "submit", "--wait", "--timeout", "1", name, check=False)
    job_id = re.match(r"Submitted job (\d+) \(slow\)", result.stdout).group(1)
    assert result.returncode == 1
    assert result.stderr == (f"hpcctl: error: jobs {job_id} still running after 1 s "
                             "(follow them with `hpcctl status` or `hpcctl logs -f`)\n")


def test_rejected_job_in_a_pipeline_names_the_jobs_already_queued(sandbox, work):
    name = spec(work, "p.yaml", "- {name: first, command: 'true', sbatch_args: [--hold]}\n"
                                "- {name: second, command: 'true', dependencies: {afterok: [first]},\n"
                                "   sbatch_args: [--constraint=nosuchfeature]}\n")
    result = hpcctl(sandbox, work, "submit", name, check=False)
    bundles = list((work / "data" / "hpcctl" / "runs").iterdir())
    assert [b.name.split("-")[1] for b in bundles] == ["first"]
    first = json.loads((bundles[0] / "run.json").read_text())["job_id"]
    assert result.returncode == 3
    assert result.stderr == ("hpcctl: error: sbatch rejected the job: sbatch: error: Batch job submission failed: "
                             f"Invalid feature specification (job 'second'; already submitted: first={first}) "
                             "(fix the spec or the site limits; `hpcctl submit --test-only` checks without queuing)\n")


def test_cancel_one_array_task_then_the_rest_and_unknown_jobs(sandbox, work):
    name = spec(work, "held.yaml", "name: held\ncommand: 'true'\narray: 0-1\nsbatch_args: [--hold]\n")
    job_id = hpcctl(sandbox, work, "submit", "--parsable", name).stdout.strip()
    assert hpcctl(sandbox, work, "cancel", f"{job_id}_1").stdout == f"Cancelled {job_id}_1\n"
    status = json.loads(hpcctl(sandbox, work, "status", job_id, "--json").stdout)[job_id]
    assert [(t["job_id"], t["state"], t["reason"]) for t in status] == [(f"{job_id}_[0]", "PENDING", "JobHeldUser")]
    hpcctl(sandbox, work, "cancel", job_id)
    listing = json.loads(hpcctl(sandbox, work, "list", "--json").stdout)
    assert [(r["job_id"], r["state"]) for r in listing] == [(job_id, "CANCELLED")]

    unknown = hpcctl(sandbox, work, "cancel", "999999", check=False)
    assert (unknown.returncode, unknown.stderr) == (1, "hpcctl: error: scancel failed: Kill job error on job id "
                                                       "999999: Invalid job id specified (check the job ids with "
                                                       "`hpcctl status` or `hpcctl list`)\n")
    no_logs = hpcctl(sandbox, work, "logs", "999999", check=False)
    assert (no_logs.returncode, no_logs.stderr) == (1, "hpcctl: error: no output file known for job 999999 (pass "
                                                       "the run bundle (see `hpcctl list`), or look in the job's "
                                                       "working directory)\n")
