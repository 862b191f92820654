"""Job specs do not reach the shell (issue 10, class 4).

As hpcuser, with only a spec file (and a user config) in the user's own directory: a hostile spec is refused by
`hpcctl render` and `hpcctl submit` with one line naming the problem, nothing runs and nothing is queued; a spec
that is accepted writes each of its values into the batch script as text, on the line it belongs to.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import uuid
from pathlib import Path

import pytest

from tests.conftest import hpcctl_cmd

pytestmark = pytest.mark.integration

IMAGE = "127.0.0.1:5000/hpcctl/busybox:latest"


@pytest.fixture
def work(sandbox):
    """hpcuser's directory for one test, with its run bundles and user config inside; jobs left are cancelled."""
    path = sandbox.workdir()
    yield path
    runs = path / "data" / "hpcctl" / "runs"
    ids = [json.loads((b / "run.json").read_text()).get("job_id") for b in runs.iterdir()] if runs.is_dir() else []
    if any(ids):
        sandbox.run(["scancel", *filter(None, ids)], check=False)


@pytest.fixture
def mark():
    """A file that exists only if a hostile value ran as a command (the sandbox's nodes share /tmp with us)."""
    path = Path(f"/tmp/p-{uuid.uuid4().hex}")
    yield path
    path.unlink(missing_ok=True)


def write_as_user(sandbox, path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    user = pwd.getpwnam(sandbox.user)
    for part in [path, *path.parents]:
        if part == Path(f"/home/{sandbox.user}"):
            break
        os.chown(part, user.pw_uid, user.pw_gid)
    return path


def hpcctl(sandbox, work: Path, *args: str, shell_prefix: str = ""):
    env = {"XDG_DATA_HOME": str(work / "data"), "XDG_CONFIG_HOME": str(work / "config")}
    command = hpcctl_cmd(*args)
    if shell_prefix:
        command = f"{shell_prefix}; exec {shlex.join(command)}"
    return sandbox.run(command, user=sandbox.user, cwd=work, check=False, timeout=120, env=env)


def refused(result, problem: str) -> str:
    """The one line hpcctl printed for a refused spec, after checking that nothing else happened."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert problem in result.stderr, result.stderr
    return result.stderr


def nothing_queued(work: Path) -> None:
    runs = work / "data" / "hpcctl" / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_an_environment_key_cannot_run_a_command(sandbox, work, mark):
    write_as_user(sandbox, work / "job.yaml", f'name: envkey\ncommand: "true"\nresources: {{time: "00:01:00"}}\n'
                                              f'environment:\n  "X=1; touch {mark}; Y": v\n')
    line = refused(hpcctl(sandbox, work, "render", "job.yaml"), "is not an environment variable name")
    assert line.startswith(f"hpcctl: error: job.yaml:5: environment.X=1; touch {mark}; Y: ")
    refused(hpcctl(sandbox, work, "submit", "--wait", "--timeout", "60", "job.yaml"),
            "is not an environment variable name")
    nothing_queued(work)
    assert not mark.exists()


@pytest.mark.parametrize("field,spec", [
    ("image", 'image: "{image}\\n#SBATCH --uid=0\\ntouch {mark}"'),
    ("resources.account", 'resources: {{account: "root\\n#SBATCH --uid=0\\ntouch {mark}"}}'),
    ("resources.partition", 'resources: {{partition: "debug\\rtouch {mark}"}}'),
    ("resources.qos", 'resources: {{qos: "normal\\u2028touch {mark}"}}'),
    ("outputs.stdout", 'outputs: {{stdout: "out.txt\\ntouch {mark}"}}'),
    ("outputs.stderr", 'outputs: {{stderr: "err.txt\\ntouch {mark}"}}'),
    ("container.workdir", 'image: {image}\ncontainer: {{workdir: "/tmp\\ntouch {mark}"}}'),
    ("environment.A", 'environment: {{A: "x\\ntouch {mark}"}}'),
    ("sbatch_args[0]", 'sbatch_args: ["--comment=x\\ntouch {mark}"]'),
    ("command", 'command: "true\\ntouch {mark}"'),
    ("command[1]", 'command: [echo, "x\\ntouch {mark}"]'),
])
def test_a_line_break_cannot_add_a_line_to_the_script(sandbox, work, mark, field, spec):
    text = spec.format(image=IMAGE, mark=mark)
    body = text if field.startswith("command") else f'command: "true"\n{text}'
    write_as_user(sandbox, work / "job.yaml", f"name: breaks\n{body}\n")
    for args in (["render"], ["submit", "--wait", "--timeout", "60"]):
        line = refused(hpcctl(sandbox, work, *args, "job.yaml"), f": {field}: contains a line break (write it on one")
        assert line.startswith("hpcctl: error: job.yaml:"), line
    nothing_queued(work)
    assert not mark.exists()


def test_values_that_are_accepted_stay_text_on_their_own_line(sandbox, work, mark):
    values = [f"'; touch {mark}; echo '", f"$(touch {mark})", f"`touch {mark}`", f'"; touch {mark}; "',
              "tab\there # not a comment", "back\\slash"]
    environment = "".join(f"  V{i}: {json.dumps(v)}\n" for i, v in enumerate(values))
    show = " ".join(f'"$V{i}"' for i in range(len(values)))
    spec = (f"name: text\ncommand: printf '%s\\n' {show}\nresources: {{time: \"00:01:00\"}}\n"
            f"sbatch_args: ['--comment=a \"b\" #c']\nenvironment:\n{environment}")
    write_as_user(sandbox, work / "job.yaml", spec)
    write_as_user(sandbox, work / "plain.yaml", spec.replace(str(mark), "x"))

    script = hpcctl(sandbox, work, "render", "job.yaml")
    plain = hpcctl(sandbox, work, "render", "plain.yaml")
    assert script.returncode == 0 and plain.returncode == 0, (script.stderr, plain.stderr)
    assert len(script.stdout.splitlines()) == len(plain.stdout.splitlines())
    assert [line for line in script.stdout.splitlines() if "touch" in line and not line.startswith("export V")] == []

    result = hpcctl(sandbox, work, "submit", "--wait", "--timeout", "120", "job.yaml")
    assert result.returncode == 0, result.stderr
    output = result.stdout.split("<==\n", 1)[1]
    assert output.splitlines() == values
    assert not mark.exists()


def alias_bomb(first_line: str) -> str:
    """A "billion laughs": each level lists the one before nine times, 9**9 strings in all if expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return first_line + "".join(f"  {line}\n" for line in lines)


def test_an_alias_bomb_is_refused_in_little_memory(sandbox, work):
    write_as_user(sandbox, work / "job.yaml", alias_bomb('name: bomb\ncommand: "true"\nenvironment:\n'))
    refused(hpcctl(sandbox, work, "render", "job.yaml", shell_prefix="ulimit -v 1048576"),
            "aliases expand to more than 10000 values")


def test_an_alias_bomb_in_the_user_config_is_refused(sandbox, work):
    write_as_user(sandbox, work / "config" / "hpcctl" / "config.yaml", alias_bomb("defaults:\n  partition: debug\n"
                                                                                 "lols:\n"))
    write_as_user(sandbox, work / "job.yaml", 'name: ok\ncommand: "true"\n')
    refused(hpcctl(sandbox, work, "render", "job.yaml", shell_prefix="ulimit -v 1048576"),
            "aliases expand to more than 10000 values")


def test_a_huge_spec_is_refused_unread(sandbox, work):
    write_as_user(sandbox, work / "job.yaml", 'name: big\ncommand: "true"\n#' + "x" * (2 << 20) + "\n")
    refused(hpcctl(sandbox, work, "render", "job.yaml"), "job.yaml: larger than 1 MiB (")


@pytest.mark.parametrize("resources,problem", [
    ("{memory: -1}", "job.yaml:3: resources.memory: -1 is below the minimum 0"),
    ("{nodes: 99999999999999999999}", "resources.nodes: 99999999999999999999 is above the maximum 2147483647"),
    ("{nodes: [1]}", "resources.nodes: expected integer, got list [1]"),
    ("{memory: 1.5}", "resources.memory: expected string or integer, got float 1.5"),
    ("{gpus: -1}", "resources.gpus: -1 is below the minimum 0"),
    ("{cpus_per_task: {a: 1}}", "resources.cpus_per_task: expected integer, got dict {'a': 1}"),
    ("{time: [1]}", "resources.time: expected string, got list [1]"),
])
def test_a_number_out_of_range_or_a_wrong_type_is_one_line(sandbox, work, resources, problem):
    write_as_user(sandbox, work / "job.yaml", f'name: nums\ncommand: "true"\nresources: {resources}\n')
    refused(hpcctl(sandbox, work, "render", "job.yaml"), problem)
    refused(hpcctl(sandbox, work, "submit", "job.yaml"), problem)
    nothing_queued(work)
