"""Specs written to break out of their fields: shell names, line breaks, alias bombs, huge files and numbers out of
range are each one validation problem with file:line and a fix, never a traceback and never a line in the script."""

import re
import time
from pathlib import Path

import pytest

from hpcctl.errors import ConfigError, HpcctlError
from hpcctl.jobspec.load import load_job_file, parse_job_file
from hpcctl.render.script import render_job
from hpcctl.schema.validate import MAX_YAML_BYTES
from hpcctl.site import select as user_config
from hpcctl.site.config import load_site

REPO = Path(__file__).resolve().parents[3]
SANDBOX = load_site(REPO / "site-configs" / "sandbox.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_job_file(text, "job.yaml", site=SANDBOX)
    return err.value.problems


def error(text: str) -> str:
    """The one line the CLI prints: the problem and, at its end, the fix."""
    with pytest.raises(ConfigError) as err:
        parse_job_file(text, "job.yaml", site=SANDBOX)
    return str(err.value)


def alias_bomb(head: str = "name: bomb\ncommand: x\nenvironment:\n") -> str:
    """A "billion laughs" under ``head``: each level lists the one before nine times, 9**9 strings if expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return head + "".join(f"  {line}\n" for line in lines)


def test_environment_names_must_be_shell_names():
    assert problems("name: t\ncommand: x\nenvironment:\n  OK_1: a\n  'X=1; touch /tmp/p; Y': b\n  2X: c\n") == [
        "job.yaml:5: environment.X=1; touch /tmp/p; Y: 'X=1; touch /tmp/p; Y' is not an environment variable name "
        "(use letters, digits and '_', not starting with a digit)",
        "job.yaml:6: environment.2X: '2X' is not an environment variable name "
        "(use letters, digits and '_', not starting with a digit)",
    ]


@pytest.mark.parametrize("field,yaml_text", [
    ("image", 'image: "busybox\\ntouch /tmp/p"'),
    ("resources.account", 'resources: {account: "a\\n#SBATCH --uid=0"}'),
    ("resources.partition", 'resources: {partition: "debug\\rtouch /tmp/p"}'),
    ("resources.qos", 'resources: {qos: "q\\u2028x"}'),
    ("outputs.stdout", 'outputs: {stdout: "out\\ntouch /tmp/p"}'),
    ("outputs.stderr", 'outputs: {stderr: "err\\x1b[2J"}'),
    ("environment.A", 'environment: {A: "one\\ntwo"}'),
    ("container.workdir", 'container: {workdir: "/tmp\\x00"}'),
    ("sbatch_args[0]", 'sbatch_args: ["--comment=a\\vb"]'),
    ("sbatch_args[0]", 'sbatch_args: ["--comment=a\\n#SBATCH --uid=0"]'),
    ("container.mounts[0]", 'container: {mounts: ["/a\\n/b"]}'),
])
def test_control_characters_in_one_line_fields_are_problems(field, yaml_text):
    found = problems(f"name: t\n{yaml_text}\ncommand: x\n" + ("" if field == "image" else "image: busybox\n"))
    assert len(found) == 1 and found[0].startswith(f"job.yaml:2: {field}: "), found
    assert " contains " in found[0] and found[0].endswith(")")
    assert "\n" not in found[0] and "\r" not in found[0]


def test_a_command_is_one_line_and_a_script_may_have_several():
    assert problems('name: t\ncommand: "true\\ntouch /tmp/p"\n') == [
        "job.yaml:2: command: contains a line break (write it on one line, or as several lines under `script:`)"]
    assert problems('name: t\ncommand: [echo, "a\\nb"]\n') == [
        "job.yaml:2: command[1]: contains a line break (write it on one line, or as several lines under `script:`)"]
    job = parse_job_file("name: t\nscript: |\n  echo one\n  \techo two\n", "job.yaml").jobs[0]
    assert job.script == "echo one\n\techo two\n"
    assert problems('name: t\nscript: "echo \\x07one\\n"\n') == [
        "job.yaml:2: script: contains the control character U+0007 (remove it)"]


def test_tabs_are_text():
    job = parse_job_file('name: t\ncommand: "echo\\ta"\nenvironment: {A: "x\\ty"}\n', "job.yaml").jobs[0]
    assert job.environment == {"A": "x\ty"}


def test_every_problem_at_once_with_schema_problems():
    assert problems('name: t\ncommand: x\nimage: "a\\nb"\nresources: {nodes: 0}\n') == [
        "job.yaml:3: image: contains a line break (write it on one line)",
        "job.yaml:4: resources.nodes: 0 is below the minimum 1",
    ]


def test_alias_bomb_is_refused_quickly_in_one_line():
    start = time.monotonic()
    found = error(alias_bomb())
    assert time.monotonic() - start < 2
    assert re.fullmatch(r"job\.yaml:\d+: aliases expand to more than 10000 values "
                        r"\(write the values out, or use fewer aliases \(\*name\) of large parts\)", found)


def test_a_few_aliases_are_fine():
    job = parse_job_file("name: t\ncommand: &c echo hi\nenvironment: {A: *c}\n", "job.yaml").jobs[0]
    assert job.environment == {"A": "echo hi"}


def test_recursive_alias_and_deep_nesting_are_refused():
    too_deep = ("job.yaml:2: nested deeper than 50 levels "
                "(flatten it; an alias (*name) must not refer to its own parent)")
    assert error("name: t\ncommand: &c [*c]\n") == too_deep
    assert error("name: t\ncommand: " + "[" * 5000 + "]" * 5000 + "\n") == too_deep


@pytest.mark.parametrize("text,problem", [
    ("name: t\ncommand: x\nenvironment:\n  ? [a, b]\n  : 1\n",
     "job.yaml:4: environment: a key must be a plain value, not a list or mapping (write the key as text)"),
    ("name: t\ncommand: x\nresources: {nodes: " + "9" * 5000 + "}\n",
     f"job.yaml:3: resources.nodes: cannot read '{'9' * 36}... as !!int (write it as quoted text without a tag)"),
    ("name: !!python/name:os.system t\ncommand: x\n",
     "job.yaml:1: name: cannot read 't' as !!python/name:os.system (write it as quoted text without a tag)"),
])
def test_unreadable_values_are_problems_not_tracebacks(text, problem):
    assert error(text) == problem


def test_file_over_the_size_cap_is_refused_before_parsing(tmp_path):
    spec = tmp_path / "big.yaml"
    spec.write_text("name: t\ncommand: x\n#" + "x" * MAX_YAML_BYTES + "\n")
    with pytest.raises(ConfigError) as err:
        load_job_file(str(spec))
    assert str(err.value) == f"{spec}: larger than 1 MiB (a job spec or config is a short file; remove what was " \
                             "generated into it)"


def test_file_that_is_not_utf8_is_a_problem(tmp_path):
    spec = tmp_path / "bin.yaml"
    spec.write_bytes(b"name: t\ncommand: \xff\xfe\n")
    with pytest.raises(ConfigError) as err:
        load_job_file(str(spec))
    assert str(err.value) == f"{spec}: not UTF-8 text (save the file as UTF-8)"


@pytest.mark.parametrize("text,problem", [
    ("resources: {memory: -1}", "job.yaml:3: resources.memory: -1 is below the minimum 0"),
    ("resources: {memory: '" + "9" * 400 + ".5G'}",
     "job.yaml:3: resources.memory: more than 8 EiB (ask for at most 8 EiB per node)"),
    ("resources: {nodes: 4294967296}", "job.yaml:3: resources.nodes: 4294967296 is above the maximum 2147483647"),
    ("resources: {gpus: -1}", "job.yaml:3: resources.gpus: -1 is below the minimum 0"),
    ("resources: {cpus_per_task: 1.5}", "job.yaml:3: resources.cpus_per_task: expected integer, got float 1.5"),
    ("resources: {tasks_per_node: 99999999999}",
     "job.yaml:3: resources.tasks_per_node: 99999999999 is above the maximum 2147483647"),
    ("array: -5", "job.yaml:3: array: -5 is below the minimum 0"),
    ("dependencies: {afterok: [-5]}", "job.yaml:3: dependencies.afterok[0]: -5 is below the minimum 1"),
])
def test_numbers_are_range_checked(text, problem):
    assert problems(f"name: t\ncommand: x\n{text}\n") == [problem]


HOSTILE_VALUES = ["-1", "0", "[a, b]", "[[a]]", "{a: 1}", "1.5", "-1.5", ".inf", ".nan", "99999999999999999999999999",
                  "null", "true", "''", '"a\\nb"', "2020-01-01", "2020-01-01 10:00:00", "!!binary aGk=", "!!set {a}",
                  "'" + "9" * 400 + ".9T'", "'x' ", "&a [*a]"]
FIELDS = ["name", "image", "command", "script", "array", "environment", "environment.A", "outputs", "outputs.stdout",
          "outputs.stderr", "sbatch_args", "resources", "mpi", "mpi.flavour", "mpi.pmi", "container",
          "container.workdir", "container.mounts", "container.env", "container.writable", "container.entrypoint",
          "dependencies", "dependencies.afterok"] + [f"resources.{key}" for key in (
              "nodes", "tasks_per_node", "cpus_per_task", "memory", "gpus", "gpu_type", "time", "partition",
              "account", "qos")]


def spec_with(field: str, value: str) -> str:
    fields = {"name": "t", "image": "busybox", "command": "x"}
    if field == "script":
        del fields["command"]
    head, _, key = field.partition(".")
    fields[head] = f"{{{key}: {value}}}" if key else value
    return "".join(f"{name}: {text}\n" for name, text in fields.items())


@pytest.mark.parametrize("field", FIELDS)
def test_no_value_of_the_wrong_type_or_range_is_a_traceback(field):
    for value in HOSTILE_VALUES:
        try:
            for job in parse_job_file(spec_with(field, value), "job.yaml", site=SANDBOX).jobs:
                render_job(job, SANDBOX)
        except HpcctlError:
            pass


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "no-system"))
    path = tmp_path / "config" / "hpcctl" / "config.yaml"
    path.parent.mkdir(parents=True)
    return path


def test_user_config_alias_bomb_is_refused(config_home):
    config_home.write_text(alias_bomb("lols:\n"))
    with pytest.raises(ConfigError) as err:
        user_config.user_settings()
    assert str(err.value).startswith(f"{config_home}:")
    assert str(err.value).endswith(": aliases expand to more than 10000 values "
                                   "(write the values out, or use fewer aliases (*name) of large parts)")


def test_user_config_over_the_size_cap_is_refused(config_home):
    config_home.write_text("defaults: {partition: debug}\n#" + "x" * MAX_YAML_BYTES + "\n")
    with pytest.raises(ConfigError) as err:
        user_config.user_settings()
    assert str(err.value).startswith(f"{config_home}: larger than 1 MiB (")


def test_user_config_defaults_are_one_line(config_home):
    config_home.write_text('defaults:\n  account: "a\\n#SBATCH --uid=0"\n')
    with pytest.raises(ConfigError) as err:
        user_config.user_settings()
    assert err.value.problems == [f"{config_home}:2: defaults.account: contains a line break (write it on one line)"]
