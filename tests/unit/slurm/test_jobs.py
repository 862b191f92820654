"""Parsing what Slurm prints: --parsable ids with a cluster, squeue --json records, scontrol lines."""

import pytest

from hpcctl.errors import HpcctlError
from hpcctl.slurm.jobs import expand_output, from_sacct_line, from_scontrol_line, from_squeue, parse_parsable, split_ref


@pytest.mark.parametrize("out,expected", [("123\n", ("123", None)), ("123;sandbox\n", ("123", "sandbox")),
                                          ("sbatch: warning: x\n456;c2\n", ("456", "c2"))])
def test_parsable_id_and_cluster_split_on_semicolon(out, expected):
    assert parse_parsable(out) == expected


@pytest.mark.parametrize("out", ["", "123:sandbox", "Submitted batch job 12"])
def test_unreadable_sbatch_output(out):
    with pytest.raises(HpcctlError) as err:
        parse_parsable(out)
    assert "cannot read a job id from sbatch's output" in str(err.value)


def test_job_references():
    assert split_ref("123") == ("123", None)
    assert split_ref("123_4") == ("123", "4")
    with pytest.raises(HpcctlError) as err:
        split_ref("abc")
    assert str(err.value) == "'abc' is not a job id (give a job id such as 123 or 123_4, or a run bundle path)"


RECORD = {"job_id": 24, "array_job_id": 23, "array_task_id": 0, "array_task_string": "", "name": "sweep",
          "job_state": "FAILED", "state_reason": "NonZeroExitCode", "exit_code": 256, "nodes": "n1",
          "batch_host": "n1", "standard_output": "out/%x-%A_%a.log", "current_working_directory": "/home/u",
          "user_name": "u"}


def test_squeue_array_task_record():
    info = from_squeue(RECORD)
    assert (info.job_id, info.state, info.exit_code) == ("23_0", "FAILED", "1:0")
    assert info.stdout == "/home/u/out/sweep-23_0.log"
    assert info.matches("23") and info.matches("23_0") and not info.matches("23_1") and not info.matches("2")
    assert not info.active


def test_squeue_pending_array_and_plain_job():
    pending = from_squeue({**RECORD, "job_id": 30, "array_job_id": 30, "array_task_id": None,
                           "array_task_string": "0-3%2", "job_state": "PENDING"})
    assert pending.job_id == "30_[0-3%2]" and pending.active and pending.matches("30")
    plain = from_squeue({**RECORD, "array_job_id": 0, "array_task_id": None, "standard_output": "/abs/%j.out"})
    assert plain.job_id == "24" and plain.stdout == "/abs/24.out"


def test_scontrol_line():
    info = from_scontrol_line("JobId=24 ArrayJobId=23 ArrayTaskId=1 JobName=t.sh JobState=COMPLETED Reason=None "
                              "ExitCode=0:0 NodeList=n1 StdOut=/tmp/arr-23_1.out")
    assert (info.job_id, info.name, info.state, info.stdout) == ("23_1", "t.sh", "COMPLETED", "/tmp/arr-23_1.out")


def test_expand_output_patterns():
    assert expand_output("%x_%3a_%%.out", "/w", "9", "8", "4", "n", "u", "n1") == "/w/n_004_%.out"


def test_sacct_line_where_accounting_exists():
    info = from_sacct_line("23_1|sweep|CANCELLED by 2001|0:15|n2")
    assert (info.job_id, info.name, info.state, info.exit_code, info.nodes, info.source) == (
        "23_1", "sweep", "CANCELLED", "0:15", "n2", "sacct")
    assert not info.active and info.matches("23") and info.matches("23_1")
