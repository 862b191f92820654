"""Parsing what Slurm prints: --parsable ids with a cluster, squeue records, scontrol lines."""

import pytest

from hpcctl.errors import HpcctlError
from hpcctl.slurm.jobs import (
    expand_output,
    from_sacct_line,
    from_scontrol_line,
    parse_parsable,
    split_ref,
    split_squeue,
)


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


def squeue_output(*records: tuple[str, ...]) -> str:
    """What `squeue --noheader --Format=SQUEUE_FORMAT` prints for these records."""
    return "".join("\x1f".join(fields) + "\x1e\n" for fields in records)


TASK = ("24", "23_0", "FAILED", "NonZeroExitCode", "256", "n1", "n1", "u", "/home/u", "sweep", "out/%x-%A_%a.log")


def test_squeue_array_task_record():
    [info] = split_squeue(squeue_output(TASK))
    assert (info.job_id, info.state, info.exit_code) == ("23_0", "FAILED", "1:0")
    assert info.stdout == "/home/u/out/sweep-23_0.log"
    assert info.matches("23") and info.matches("23_0") and not info.matches("23_1") and not info.matches("2")
    assert not info.active


def test_squeue_pending_array_and_plain_job():
    pending, plain = split_squeue(squeue_output(
        ("30", "30_[0-3%2]", "PENDING", "None", "0", "", "n/a", "u", "/w", "p", "%A-%a.out"),
        ("24", "24", "RUNNING", "None", "0", "n1", "n1", "u", "/w", "j", "/abs/%j.out")))
    assert pending.job_id == "30_[0-3%2]" and pending.active and pending.matches("30")
    assert plain.job_id == "24" and plain.stdout == "/abs/24.out"


def test_squeue_free_text_with_separators_and_newlines_keeps_the_fixed_fields():
    odd_name = ("25", "25", "RUNNING", "None", "0", "n2", "n2", "u", "/w", "a\x1fb", "x.out")
    newline = ("26", "26", "PENDING", "JobHeldUser", "0", "", "n/a", "u", "/w\nx", "n\x1e\n7\x1fz", "x.out")
    infos = split_squeue(squeue_output(odd_name, newline, TASK))
    assert [(i.job_id, i.state, i.name, i.stdout) for i in infos] == [
        ("25", "RUNNING", "", ""), ("26", "PENDING", "", ""), ("23_0", "FAILED", "sweep", "/home/u/out/sweep-23_0.log")]


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
