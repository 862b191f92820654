"""Run bundles and finding a job's output after Slurm has forgotten it (no accounting on the sandbox)."""

import pytest

from hpcctl.errors import HpcctlError
from hpcctl.runs import bundle as bundles
from hpcctl.runs.follow import Target, output_paths, resolve


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


def make_bundle(workdir, job_id, output="sweep-%A_%a.out"):
    record = bundles.RunRecord(job_name="sweep", spec_file="/s.yaml", site="/site.yaml", cluster="sandbox",
                               hpcctl_version="0.1.0", workdir=str(workdir), output=output, job_id=job_id)
    return bundles.create("sweep", "name: sweep\n", {"cluster": "sandbox"}, "#!/bin/sh\n", record)


def test_bundle_holds_spec_site_script_and_record(data_home):
    bundle = make_bundle(data_home, "42")
    assert bundle.path.parent == data_home / "data" / "hpcctl" / "runs"
    assert (bundle.path / "spec.yaml").read_text() == "name: sweep\n"
    assert (bundle.path / "site.yaml").read_text() == "cluster: sandbox\n"
    assert bundle.record().job_id == "42"


def test_references_resolve_by_job_id_bundle_path_and_directory_name(data_home):
    bundle = make_bundle(data_home, "42")
    assert [t.ref for t in resolve(["42", str(bundle.path), bundle.path.name, "42_3"])] == ["42"] * 3 + ["42_3"]
    assert resolve(["43"]) == [Target("43", None)]
    with pytest.raises(HpcctlError) as err:
        resolve(["no-such-run"])
    assert str(err.value).startswith("'no-such-run' is neither a job id nor a run bundle (give a job id such as")


def test_array_outputs_found_from_the_bundle_once_slurm_forgot_the_job(data_home):
    bundle = make_bundle(data_home, "42")
    for task in (0, 1):
        (data_home / f"sweep-42_{task}.out").write_text(f"task {task}\n")
    target = Target("42", bundle.record())
    assert output_paths(target, []) == [("42", str(data_home / "sweep-42_0.out")),
                                        ("42", str(data_home / "sweep-42_1.out"))]
    assert output_paths(Target("42_1", bundle.record()), []) == [("42_1", str(data_home / "sweep-42_1.out"))]


def test_plain_job_output_from_the_bundle(data_home):
    bundle = make_bundle(data_home, "7", output="out/%x-%j.log")
    assert output_paths(Target("7", bundle.record()), []) == [("7", str(data_home / "out" / "sweep-7.log"))]


def test_newest_bundle_first_even_within_one_second(data_home):
    """A pipeline's jobs are submitted within a second; `hpcctl list` must still show them newest first."""
    for job_id in ("10", "11", "12"):
        bundles.create(f"job{13 - int(job_id)}", "", {}, "", bundles.RunRecord(
            job_name="x", spec_file="", site="", cluster="", hpcctl_version="", workdir="", output="",
            job_id=job_id))
    assert [b.record().job_id for b in bundles.all_bundles()] == ["12", "11", "10"]
