"""The pieces of a script that are easy to get wrong: image references for the plugin, srun vs batch-step launch."""

import shutil
import subprocess

import pytest

from hpcctl.cli import build_parser
from hpcctl.cli.completion import bash_script
from hpcctl.jobspec.load import parse_job_file
from hpcctl.render.directives import plugin_image, sbatch_directives, sbatch_quote, uses_srun
from hpcctl.runs.submit import dependency_args, dry_run_commands


@pytest.mark.parametrize("ref,expected", [
    ("127.0.0.1:5000/hpcctl/busybox:latest", "127.0.0.1:5000#hpcctl/busybox:latest"),
    ("nvcr.io/nvidia/pytorch:24.01", "nvcr.io#nvidia/pytorch:24.01"),
    ("me@nvcr.io/a/b:1", "me@nvcr.io#a/b:1"),
    ("localhost/x", "localhost#x"),
    ("ubuntu", "ubuntu"), ("library/ubuntu:22.04", "library/ubuntu:22.04"),
    ("nvcr.io#nvidia/x", "nvcr.io#nvidia/x"), ("docker://nvcr.io/a/b", "docker://nvcr.io/a/b"),
    ("./x.sqsh", "./x.sqsh"), ("/a/b.sqsh", "/a/b.sqsh"),
])
def test_plugin_image_uses_the_enroot_registry_form(ref, expected):
    assert plugin_image(ref) == expected


@pytest.mark.parametrize("arg,line", [
    ("--container-image=nvcr.io#nvidia/x", "--container-image=nvcr.io\\#nvidia/x"),
    ("--exclusive", "--exclusive"),
    ("--output=my logs/%j.out", '--output="my logs/%j.out"'),
    ("--comment=it's a \"b\"#c\\d", '--comment="it\'s a \\"b\\"#c\\\\d"'),
])
def test_sbatch_quote_keeps_each_argument_whole(arg, line):
    """sbatch splits an #SBATCH line at blanks, ends it at '#' and honours "..." and backslashes; the lines here
    were checked with sbatch 22.05 (scontrol show job printed the value back unchanged)."""
    assert sbatch_quote(arg) == line


def test_srun_only_for_several_tasks_or_mpi():
    one, many, mpi = parse_job_file("- {name: a, command: x}\n- {name: b, command: x, resources: {nodes: 2}}\n"
                                    "- {name: c, command: x, mpi: {}}\n", "p.yaml").jobs
    assert (uses_srun(one), uses_srun(many), uses_srun(mpi)) == (False, True, True)


def test_dependency_arguments_fill_in_pipeline_ids():
    jobs = parse_job_file("- {name: a, command: x}\n- name: b\n  command: x\n"
                          "  dependencies: {afterok: [a, 17], afterany: [a]}\n", "p.yaml")
    assert dependency_args(jobs.job("b"), {"a": "100"}) == (
        ["--dependency=afterok:100:17,afterany:100"], {"afterok": ["100", "17"], "afterany": ["100"]})
    assert dry_run_commands(jobs)[1] == ("sbatch --parsable --dependency=afterok:<job id of a>:17,"
                                         "afterany:<job id of a> <run bundle of b>/job.sh")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_bash_completion_lists_commands_and_options_and_passes_shellcheck():
    script = bash_script(build_parser())
    assert "submit) words=\"--dry-run --help --json --keep-sbatch-env --parsable --site --test-only --timeout " \
           "--wait\" ;;" in script
    assert "config) words=\"--help --json --site show\" ;;" in script
    assert "completion) words=\"--help bash\" ;;" in script
    result = subprocess.run(["shellcheck", "--shell=bash", "-"], input=script, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("memory,option", [("4G", "--mem=4096M"), ("1536M", "--mem=1536M"), ("512K", "--mem=1M"),
                                           ("0", "--mem=0M")])
def test_memory_is_rounded_up_to_whole_megabytes(memory, option):
    """--mem=0 means all of a node's memory: a small request must not round down to it."""
    job = parse_job_file(f"name: m\ncommand: x\nresources: {{memory: '{memory}'}}\n", "m.yaml").jobs[0]
    assert option in sbatch_directives(job)
