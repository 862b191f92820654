"""Every value reaches the batch script quoted for its place in it: shell syntax in a value stays text, and no value
adds a line, in our template and in a site's own."""

import json
import subprocess
from pathlib import Path

import pytest

from hpcctl.jobspec.load import parse_job_file
from hpcctl.jobspec.model import JobSpec
from hpcctl.render.script import render_job
from hpcctl.site.config import load_site

REPO = Path(__file__).resolve().parents[3]
SANDBOX = load_site(REPO / "site-configs" / "sandbox.yaml")
HOSTILE = ["'; touch {mark}; echo '", "$(touch {mark})", "`touch {mark}`", '"; touch {mark}; "', "a\tb # c",
           "\\", "x;touch {mark}"]


def run_sh(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=cwd)


def site_with_template(tmp_path: Path, template: str):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "job.sh.j2").write_text(template)
    config = tmp_path / "site.yaml"
    config.write_text((REPO / "site-configs" / "sandbox.yaml").read_text() + f"\ntemplates:\n  dir: {folder}\n")
    return load_site(config)


@pytest.mark.parametrize("image", [None, "127.0.0.1:5000/hpcctl/busybox:latest"])
def test_environment_values_are_text_in_the_script(tmp_path, image):
    mark = tmp_path / "mark"
    values = [v.format(mark=mark) for v in HOSTILE]
    environment = "".join(f"  V{i}: {json.dumps(v)}\n" for i, v in enumerate(values))
    job = parse_job_file(f"name: t\ncommand: x\nenvironment:\n{environment}"
                         + (f"image: {image}\n" if image else ""), "t.yaml").jobs[0]
    assert list(job.environment.values()) == values
    script = render_job(job, SANDBOX)
    exports = [line for line in script.splitlines() if line.startswith("export ")]
    assert len(exports) == len(values)
    shown = run_sh("\n".join(exports) + "\n" + "".join(f'printf "%s\\n" "$V{i}"\n' for i in range(len(values))),
                   tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == values
    assert not mark.exists()


def test_a_name_that_is_not_a_shell_name_cannot_run_a_command(tmp_path):
    """The loader refuses such names; a JobSpec made some other way is still quoted by the template."""
    mark = tmp_path / "mark"
    job = JobSpec(name="t", at=(), command="true", environment={f"X=1; touch {mark}; Y": "v"})
    exports = [line for line in render_job(job, SANDBOX).splitlines() if line.startswith("export ")]
    assert exports == [f"export 'X=1; touch {mark}; Y'=v"]
    run_sh(exports[0], tmp_path)
    assert not mark.exists()


def test_one_line_per_option_whatever_the_values(tmp_path):
    spec = ("name: t\nimage: 'reg.example.org/a/b:1'\ncommand: [printf, '%s', \"$(x) 'q' # c\"]\n"
            "resources: {account: 'acc #1', qos: \"q\\\"\", partition: debug}\n"
            "outputs: {stdout: 'out dir/%j \"x\".out', stderr: \"e'rr\"}\n"
            "container: {workdir: '/tmp/a b', env: [HOME]}\nsbatch_args: ['--comment=a \"b\" #c']\n")
    script = render_job(parse_job_file(spec, "t.yaml").jobs[0], SANDBOX)
    lines = script.splitlines()
    assert [line.split("=")[0] for line in lines if line.startswith("#SBATCH")] == [
        "#SBATCH --job-name", "#SBATCH --partition", "#SBATCH --account", "#SBATCH --qos", "#SBATCH --nodes",
        "#SBATCH --ntasks-per-node", "#SBATCH --output", "#SBATCH --error", "#SBATCH --comment",
        "#SBATCH --container-image", "#SBATCH --container-workdir", "#SBATCH --container-env"]
    assert lines[-1] == "printf %s '$(x) '\"'\"'q'\"'\"' # c'"
    assert len(lines) == 16


def test_a_site_template_quotes_every_value_unless_it_is_already_quoted(tmp_path):
    site = site_with_template(tmp_path, "#!/bin/sh\necho {{ job.name }} {{ environment[0][1] }}\n"
                                        "export A={{ environment[0][1] | shquote }}\n{{ command }}\n")
    job = parse_job_file("name: t\ncommand: echo done\nenvironment: {A: \"$(touch mark) it's\"}\n", "t.yaml").jobs[0]
    assert render_job(job, site) == ("#!/bin/sh\necho t '$(touch mark) it'\"'\"'s'\n"
                                     "export A='$(touch mark) it'\"'\"'s'\necho done\n")
