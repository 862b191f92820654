"""Site-overridable templates: a site's own job.sh.j2 extends ours or replaces it; undefined names are errors."""

from pathlib import Path

import pytest

from hpcctl.errors import HpcctlError
from hpcctl.jobspec.load import parse_job_file
from hpcctl.render.script import render_job
from hpcctl.site.config import load_site

REPO = Path(__file__).resolve().parents[3]
SPEC = "name: t\nimage: nvcr.io#nvidia/cuda:12.4\ncommand: nvidia-smi\n"


def site_with_templates(tmp_path: Path, template: str):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "job.sh.j2").write_text(template)
    config = tmp_path / "site.yaml"
    config.write_text((REPO / "site-configs" / "sandbox.yaml").read_text()
                      + f"\ntemplates:\n  dir: {folder}\n")
    return load_site(config)


def job():
    return parse_job_file(SPEC, "t.yaml").jobs[0]


def test_site_template_extends_ours_and_overrides_one_block(tmp_path):
    site = site_with_templates(tmp_path, '{% extends "hpcctl/job.sh.j2" %}\n'
                                         "{% block prologue %}\nset -e\nmodule load cuda/12.4\n{% endblock %}\n")
    text = render_job(job(), site)
    assert "#SBATCH --container-image=nvcr.io\\#nvidia/cuda:12.4\n" in text
    assert "set -e\nmodule load cuda/12.4\nnvidia-smi\n" in text


def test_site_template_replaces_ours(tmp_path):
    site = site_with_templates(tmp_path, "#!/bin/bash\n{% for line in sbatch %}#SBATCH {{ line }}\n{% endfor %}"
                                         "exec {{ command }}\n")
    assert render_job(job(), site).endswith("#SBATCH --output=t-%j.out\n"
                                            "#SBATCH --container-image=nvcr.io\\#nvidia/cuda:12.4\nexec nvidia-smi\n")


def test_undefined_name_in_a_template_is_an_error_naming_file_and_line(tmp_path):
    site = site_with_templates(tmp_path, "#!/bin/sh\n\n{{ job.nmae }}\n")
    with pytest.raises(HpcctlError) as err:
        render_job(job(), site)
    assert "cannot render job 't': " in str(err.value)
    assert "job.sh.j2:3: " in str(err.value)
    assert "has no attribute 'nmae'" in str(err.value)


def test_template_syntax_error_names_file_and_line(tmp_path):
    site = site_with_templates(tmp_path, "#!/bin/sh\n{% if %}\n")
    with pytest.raises(HpcctlError) as err:
        render_job(job(), site)
    assert "job.sh.j2:2: Expected an expression" in str(err.value)
