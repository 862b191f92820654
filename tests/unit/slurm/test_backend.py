"""Backend selection: pyslurm only where a build for the installed Slurm imports (none exists for 22.05 here)."""

import types

import pytest

from hpcctl.slurm import backend
from hpcctl.slurm.commands import CommandBackend, SubmitError
from hpcctl.slurm.pyslurm_backend import PyslurmBackend


def fake_pyslurm(mocker, version):
    module = types.SimpleNamespace(__version__=version)
    mocker.patch.object(backend.importlib, "import_module", return_value=module)
    mocker.patch.object(backend, "installed_slurm_version", return_value=(22, 5))
    return module


def test_commands_when_pyslurm_is_missing(mocker):
    mocker.patch.object(backend.importlib, "import_module", side_effect=ImportError("No module named 'pyslurm'"))
    assert type(backend.select_backend()) is CommandBackend


def test_pyslurm_when_built_for_the_installed_slurm(mocker):
    module = fake_pyslurm(mocker, "22.5.3")
    chosen = backend.select_backend()
    assert isinstance(chosen, PyslurmBackend) and chosen.pyslurm is module


def test_commands_when_pyslurm_is_for_another_slurm(mocker):
    fake_pyslurm(mocker, "25.11.0")
    assert type(backend.select_backend()) is CommandBackend


def test_container_jobs_still_go_through_sbatch(mocker, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#SBATCH --container-image=busybox\ntrue\n")
    module = types.SimpleNamespace(JobSubmitDescription=mocker.Mock())
    sbatch = mocker.patch.object(CommandBackend, "submit", return_value="via sbatch")
    assert PyslurmBackend(module).submit(str(script), []) == "via sbatch"
    module.JobSubmitDescription.assert_not_called()


def test_installed_slurm_version_here():
    assert backend.installed_slurm_version() == (22, 5)


class FakeRPCError(Exception):
    pass


def fake_module(mocker, submit):
    desc = mocker.Mock()
    desc.submit.side_effect = submit
    return types.SimpleNamespace(JobSubmitDescription=mocker.Mock(return_value=desc), RPCError=FakeRPCError), desc


def test_pyslurm_submits_plain_jobs_with_the_cleaned_environment(mocker, tmp_path):
    """No pyslurm build for Slurm 22.05 exists here, so the module is a stand-in with pyslurm's API."""
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#SBATCH --job-name=t\ntrue\n")
    module, desc = fake_module(mocker, lambda: 42)
    sub = PyslurmBackend(module).submit(str(script), [], env={"PATH": "/bin"}, cwd="/work")
    module.JobSubmitDescription.assert_called_once_with(script=str(script), working_directory="/work",
                                                        environment={"PATH": "/bin"})
    desc.load_sbatch_options.assert_called_once_with()
    assert (sub.job_id, sub.cluster) == ("42", None)
    assert sub.argv == ("pyslurm.JobSubmitDescription", f"script={script}")


def test_pyslurm_rejection_is_one_line_with_a_fix(mocker, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    module, _ = fake_module(mocker, FakeRPCError("Slurm error 2051: Invalid partition name specified"))
    with pytest.raises(SubmitError) as err:
        PyslurmBackend(module).submit(str(script), [], env={}, cwd="/work")
    assert str(err.value) == ("Slurm rejected the job: Slurm error 2051: Invalid partition name specified (fix the "
                              "spec or the site limits; `hpcctl submit --test-only` checks without queuing)")
