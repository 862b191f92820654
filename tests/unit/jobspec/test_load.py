"""Job specs: what a user sees for valid and broken specs; every problem at once, each with file:line and a fix."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpcctl.errors import ConfigError
from hpcctl.jobspec.load import load_job_file, parse_job_file
from hpcctl.jobspec.schema import JOB_SCHEMA

REPO = Path(__file__).resolve().parents[3]


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_job_file(text, "job.yaml")
    return err.value.problems


def test_single_job_becomes_typed_objects():
    jobs = parse_job_file("name: t\nimage: busybox\ncommand: [echo, hi]\narray: 0-3%2\nenvironment: {A: 1, B: true}\n"
                          "resources: {nodes: 2, gpus: 1, gpu_type: fake, memory: 4G}\n"
                          "container: {mounts: ['/a:/b:ro', {source: /c}], writable: false}\n", "t.yaml")
    job = jobs.jobs[0]
    assert not jobs.pipeline
    assert job.command == ("echo", "hi") and job.shell_command == "echo hi"
    assert job.resources.nodes == 2 and job.resources.memory == "4G" and job.tasks == 2
    assert job.environment == {"A": "1", "B": "true"}
    assert [m.option() for m in job.container.mounts] == ["/a:/b:ro", "/c:/c"]
    assert job.output_pattern == "t-%A_%a.out"


def test_user_defaults_fill_resources_the_spec_leaves_out():
    job = parse_job_file("name: t\ncommand: x\nresources: {time: '00:05:00'}\n", "t.yaml",
                         {"partition": "debug", "time": "00:30:00"}).jobs[0]
    assert job.resources.partition == "debug" and job.resources.time == "00:05:00"


def test_pipeline_is_submitted_dependencies_first():
    jobs = parse_job_file("- {name: report, command: x, dependencies: {afterany: [train]}}\n"
                          "- {name: train, command: x, dependencies: {afterok: [prep, 77]}}\n"
                          "- {name: prep, command: x}\n", "p.yaml")
    assert jobs.pipeline
    assert [j.name for j in jobs.jobs] == ["prep", "train", "report"]
    assert [(d.kind, d.target, d.is_job_id) for d in jobs.job("train").dependencies] == [
        ("afterok", "prep", False), ("afterok", "77", True)]


def test_schema_problems_all_at_once_with_line_and_hint():
    assert problems("name: bad name\ncomand: echo hi\nresources:\n  nodes: 0\n  gpus: two\n  time: 1h\n"
                    "array: 0-9%\ncontainer:\n  mounts: [relative:/x]\n") == [
        "job.yaml:1: name: 'bad name' is not a job name of letters, digits, '_', '.' and '-' (at most 64 characters)",
        "job.yaml:2: comand: unknown key 'comand'; did you mean 'command'?",
        "job.yaml:4: resources.nodes: 0 is below the minimum 1",
        "job.yaml:5: resources.gpus: expected integer, got str 'two'",
        "job.yaml:6: resources.time: '1h' is not a Slurm time such as 30, 01:00:00 or 2-00:00:00",
        "job.yaml:7: array: '0-9%' is not a Slurm array range such as 0-9, 1,3,5 or 0-9%2",
        "job.yaml:9: container.mounts[0]: 'relative:/x' is not SOURCE[:TARGET][:ro|rw] with absolute paths",
    ]


def test_missing_name_and_wrong_document_types():
    assert problems("command: x\n") == ["job.yaml:1: missing required key 'name'"]
    assert problems("hello\n") == ["job.yaml:1: expected object or array, got str 'hello'"]
    assert problems("[]\n") == ["job.yaml:1: needs at least 1 item(s)"]
    assert problems("") == ["job.yaml:1: the job spec is empty"]
    assert problems("name: x\ncommand: [echo\n") == ["job.yaml:3: invalid YAML: expected ',' or ']', but got "
                                                     "'<stream end>'"]


def test_cross_field_and_pipeline_problems():
    text = """\
- name: a
  command: echo
  dependencies: {afterok: [c]}
- name: b
  script: echo
  command: x
  dependencies: {afterok: [b, zz]}
- name: c
  dependencies: {afterany: [a]}
- name: d
  container: {workdir: /x}
  command: echo
  sbatch_args: [--partition=x, -N2, --container-image=x, --exclusive]
  resources: {gpu_type: fake}
"""
    assert problems(text) == [
        "job.yaml:3: [0].dependencies: dependency cycle: a -> c -> a (remove one dependency of the cycle)",
        "job.yaml:4: [1].name: needs exactly one of 'command' or 'script' "
        "(write `command:` for one line or an argv list, `script:` for several lines)",
        "job.yaml:7: [1].dependencies.afterok[0]: job 'b' depends on itself (remove this dependency)",
        "job.yaml:7: [1].dependencies.afterok[1]: no job named 'zz' in this pipeline (use one of: a, c, d)",
        "job.yaml:8: [2].name: has neither 'command' nor 'script' "
        "(write `command:` for one line or an argv list, `script:` for several lines)",
        "job.yaml:11: [3].container: container options without an image (add `image:` or remove `container:`)",
        "job.yaml:13: [3].sbatch_args[0]: '--partition' is written by hpcctl (set resources.partition instead)",
        "job.yaml:13: [3].sbatch_args[1]: '-N' is written by hpcctl (set resources.nodes instead)",
        "job.yaml:13: [3].sbatch_args[2]: '--container-image' is written by hpcctl (use image: and container:)",
        "job.yaml:14: [3].resources.gpu_type: gpu_type without gpus (set resources.gpus to 1 or more)",
    ]


def test_duplicate_names_in_a_pipeline():
    assert problems("- {name: a, command: x}\n- {name: a, command: y}\n") == [
        "job.yaml:2: [1].name: job name 'a' is used twice in this pipeline (give every job its own name)"]


def test_single_job_dependencies_must_be_job_ids():
    assert problems("name: x\ncommand: echo\ndependencies: {afterok: [prepare, 123, '45_2']}\n") == [
        "job.yaml:3: dependencies.afterok[0]: 'prepare' is not a job id "
        "(name other jobs only in a pipeline (a list of jobs); here use a Slurm job id)"]


def test_unreadable_file():
    with pytest.raises(ConfigError) as err:
        load_job_file("/nonexistent/job.yaml")
    assert str(err.value) == "/nonexistent/job.yaml: cannot read: No such file or directory " \
                             "(check the path to the job spec)"


def test_cli_prints_every_problem_and_exits_2(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\ncomand: echo\nresources: {nodes: 0}\n")
    result = subprocess.run([sys.executable, "-m", "hpcctl", "--site", "sandbox", "render", str(spec)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (f"hpcctl: error: 2 problems:\n"
                             f"  {spec}:2: comand: unknown key 'comand'; did you mean 'command'?\n"
                             f"  {spec}:3: resources.nodes: 0 is below the minimum 1 "
                             "(see `hpcctl schema` for the allowed keys)\n")


def test_schema_command_prints_the_published_schema():
    result = subprocess.run([sys.executable, "-m", "hpcctl", "schema"], capture_output=True, text=True, cwd=REPO)
    schema = json.loads(result.stdout)
    assert schema["title"] == "hpcctl job spec"
    assert {"name", "image", "command", "resources", "array", "dependencies"} <= set(schema["properties"])


def test_sbatch_args_are_one_argument_each():
    assert problems("name: x\ncommand: echo\nsbatch_args: ['--mail-type END', '-w n1', '--partition debug']\n") == [
        "job.yaml:3: sbatch_args[0]: '--mail-type END' has a blank between option and value "
        "(write it as one item: --mail-type=END)",
        "job.yaml:3: sbatch_args[1]: '-w n1' has a blank between option and value (write it as one item: -wn1)",
        "job.yaml:3: sbatch_args[2]: '--partition' is written by hpcctl (set resources.partition instead)",
    ]


def test_published_schema_works_in_standard_validators():
    """Editors and CI linters use a standard JSON Schema validator, whose patterns match anywhere in a value
    unless anchored: the schema must reject there what hpcctl rejects."""
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(JOB_SCHEMA)
    validator = jsonschema.Draft202012Validator(JOB_SCHEMA)
    specs = sorted((REPO / "examples").glob("*.yaml")) + sorted((REPO / "tests/unit/render/specs").glob("*.yaml"))
    for path in specs:
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path
    bad = {"name": "bad name", "command": "x", "array": "0-9%", "sbatch_args": ["x--exclusive"],
           "resources": {"time": "1h", "memory": "4 lots"}, "container": {"mounts": ["relative:/x"], "workdir": "w"},
           "dependencies": {"afterok": ["a b"]}}
    assert sorted(error.json_path for error in validator.iter_errors(bad)) == [
        "$.array", "$.container.mounts[0]", "$.container.workdir", "$.dependencies.afterok[0]", "$.name",
        "$.resources.memory", "$.resources.time", "$.sbatch_args[0]"]
