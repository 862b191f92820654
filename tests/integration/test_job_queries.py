"""Job queries among other users' jobs: `status`, `list`, `logs` and `submit --wait` ask Slurm only for the jobs in
question, and a job of another user whose names are not UTF-8 breaks none of them."""

import json
import re
import subprocess

import pytest

from hpcctl.sandbox import layout as L
from hpcctl.sandbox.users import ensure_test_users
from tests.conftest import hpcctl_cmd
from tests.integration import test_submit_jobs as submitting

hpcctl, spec = submitting.hpcctl, submitting.spec
work = submitting.work  # the fixture: a fresh directory of hpcuser's, its jobs cancelled at the end
pytestmark = pytest.mark.integration

NOT_UTF8 = b"d\xff\xfe-\xe9t\xe9"


@pytest.fixture
def foreign_job(sandbox):
    """A held job of the second sandbox user, its working directory, name and output path not UTF-8."""
    ensure_test_users()
    home = f"/home/{L.OTHER_USER}".encode()
    workdir = home + b"/" + NOT_UTF8
    subprocess.run([b"install", b"-d", b"-o", L.OTHER_USER.encode(), workdir], check=True)
    result = subprocess.run([b"runuser", b"-u", L.OTHER_USER.encode(), b"--", b"sbatch", b"--parsable", b"--hold",
                             b"--job-name=" + NOT_UTF8, b"--output=" + NOT_UTF8 + b"-%j.out", b"--wrap=true"],
                            cwd=workdir, capture_output=True, check=True)
    job_id = result.stdout.decode().strip()
    yield job_id
    subprocess.run(["scancel", job_id], check=False)


def test_another_users_job_with_bytes_that_are_not_utf8_breaks_nothing(sandbox, work, foreign_job):
    name = spec(work, "t.yaml", "name: mine\ncommand: echo done\n")
    result = hpcctl(sandbox, work, "submit", "--wait", name)
    job_id = re.match(r"Submitted job (\d+) \(mine\)", result.stdout).group(1)
    assert f"==> {job_id} mine COMPLETED exit 0:0 ({work}/mine-{job_id}.out) <==\ndone\n" in result.stdout

    status = hpcctl(sandbox, work, "status", job_id).stdout.splitlines()
    assert status[1].split() == [job_id, "mine", "COMPLETED", "0:0", status[1].split()[4]]
    listing = json.loads(hpcctl(sandbox, work, "list", "--json").stdout)
    assert [(r["job_id"], r["state"]) for r in listing] == [(job_id, "COMPLETED")]
    assert hpcctl(sandbox, work, "logs", job_id).stdout.endswith("done\n")

    # the other user's job itself: shown with its bytes as Slurm has them, not a traceback
    as_user = ["runuser", "-u", sandbox.user, "--", "env", "PYTHONIOENCODING=utf-8:strict"]  # as in en_US.UTF-8
    shown = subprocess.run([*as_user, *hpcctl_cmd("status", foreign_job)], capture_output=True, cwd=work)
    assert shown.returncode == 0 and shown.stderr == b"", shown.stderr
    assert shown.stdout.splitlines()[1].split() == [foreign_job.encode(), NOT_UTF8, b"PENDING", b"0:0",
                                                    b"JobHeldUser"]
    both = subprocess.run([*as_user, *hpcctl_cmd("status", job_id, foreign_job)], capture_output=True, cwd=work)
    assert [line.split()[:3] for line in both.stdout.splitlines()[1:]] == [
        [job_id.encode(), b"mine", b"COMPLETED"], [foreign_job.encode(), NOT_UTF8, b"PENDING"]], both.stderr
    as_json = json.loads(subprocess.run([*as_user, *hpcctl_cmd("status", foreign_job, "--json")],
                                        capture_output=True, cwd=work, check=True).stdout)
    [job] = as_json[foreign_job]
    assert job["name"].encode("utf-8", "surrogateescape") == NOT_UTF8
    assert job["stdout"].encode("utf-8", "surrogateescape") == f"/home/{L.OTHER_USER}/".encode() + NOT_UTF8 + \
        b"/" + NOT_UTF8 + f"-{foreign_job}.out".encode()
