"""`hpcctl run` without running anything: how its arguments become the step Slurm would give, the user, the starting
environment, the plugin's container options, and every refusal as one line."""

import os
import pwd
import subprocess
import sys

import pytest

from hpcctl.cli import build_parser
from hpcctl.cli.run_cmd import _named_as_run_options, _raw_options
from hpcctl.container import local, options
from hpcctl.errors import HpcctlError
from hpcctl.plugin.gpus import requested
from hpcctl.site.config import load_site

ROOT = pwd.getpwuid(0)


@pytest.mark.parametrize("value, gpus", [(None, ()), ("0", ()), ("2", (0, 1)), ("3,1", (3, 1)), ("1,", (1,)),
                                         (" 0, 2 ", (0, 2))])
def test_gpus_are_a_count_or_gres_indices(value, gpus):
    assert local.parse_gpus(value) == gpus


@pytest.mark.parametrize("value, message", [
    ("two", "--gpus: 'two' is neither a count nor a list of GPU indices"),
    ("1,,2", "--gpus: '1,,2' is neither a count nor a list of GPU indices"),
    ("1,1", "--gpus: '1,1' names a GPU twice"),
])
def test_bad_gpus_are_one_line(value, message):
    with pytest.raises(HpcctlError) as err:
        local.parse_gpus(value)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_injection_sees_the_gpus_as_in_a_slurm_step():
    env = local.slurm_gpu_env((3, 1))
    assert env == {"SLURM_STEP_GPUS": "3,1", "SLURM_JOB_GPUS": "3,1", "CUDA_VISIBLE_DEVICES": "3,1",
                   "GPU_DEVICE_ORDINAL": "3,1"}
    assert requested(env) == (3, 1)
    assert local.slurm_gpu_env(()) == {}


def test_the_user_is_the_sudo_caller_unless_named():
    assert local.run_user(None, {}).pw_uid == 0
    assert local.run_user(None, {"SUDO_USER": ROOT.pw_name}).pw_name == ROOT.pw_name
    assert local.run_user("0", {"SUDO_USER": "nobody"}).pw_uid == 0
    with pytest.raises(HpcctlError, match=r"^--user: no user 'no-such-user' on this machine"):
        local.run_user("no-such-user", {})


def test_start_env_is_a_login_plus_what_was_asked_for():
    caller = {"TERM": "xterm", "LANG": "C.UTF-8", "SECRET": "x", "KEEP_ME": "1", "HOME": "/elsewhere"}
    env = local.start_env(ROOT, (1,), ["KEEP_ME", "UNSET_ONE"], caller)
    assert env == {"PATH": local.DEFAULT_PATH, "HOME": ROOT.pw_dir, "USER": ROOT.pw_name, "LOGNAME": ROOT.pw_name,
                   "TERM": "xterm", "LANG": "C.UTF-8", "KEEP_ME": "1", **local.slurm_gpu_env((1,))}


def _site(tmp_path, gpu: str, plugin: str = ""):
    path = tmp_path / "site.yaml"
    path.write_text(f"version: 1\ncluster: t\ngpu:\n{gpu}\n{plugin}")
    return load_site(path)


def test_a_node_without_gpus_in_gres_conf_is_refused_naming_the_fix(tmp_path):
    gres = tmp_path / "gres.conf"
    gres.write_text("NodeName=n[1-2] Name=gpu File=/dev/nvidia[0-1]\n")
    site = _site(tmp_path, f"  gres_conf: {gres}")
    local.check_node_has_gpus(site, "n2", (0,))
    local.check_node_has_gpus(site, "login", ())
    with pytest.raises(HpcctlError) as err:
        local.check_node_has_gpus(site, "login", (0,))
    assert str(err.value) == (f"--gpus: node 'login' has no GPUs in {gres} "
                              "(pass --node NAME of a node that gres.conf gives GPUs to)")


def test_hpcctl_exec_comes_from_the_site_config_or_its_default(tmp_path):
    assert load_site(_site(tmp_path, "  binaries: []").path).plugin.exec == "/usr/local/lib/hpcctl/hpcctl-exec"
    site = _site(tmp_path, "  binaries: []", f"plugin:\n  exec: {tmp_path}/bin/hpcctl-exec\n")
    with pytest.raises(HpcctlError) as err:
        local.exec_binary(site)
    assert str(err.value).startswith(f"hpcctl-exec is not installed at {tmp_path}/bin/hpcctl-exec (build it with "
                                     "`make -C spank hpcctl-exec`")
    binary = tmp_path / "bin" / "hpcctl-exec"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert local.exec_binary(site) == str(binary)


def _args(*argv):
    return build_parser().parse_args(["run", *argv])


def test_arguments_become_the_plugins_container_options():
    args = _args("--mounts", "/data:/in:ro", "--workdir", "/w", "--env", "A,B", "--readonly", "--no-entrypoint",
                 "--mpi", "none", "--gpus", "2", "img", "--", "sh", "-c", "exit 3")
    assert args.command == ["sh", "-c", "exit 3"] and args.gpus == "2"
    opts = options.parse(_raw_options(args, "/cache/x.sqsh"), "/")
    assert (opts.image, opts.workdir, opts.env, opts.writable, opts.entrypoint, opts.mpi) == (
        "/cache/x.sqsh", "/w", ("A", "B"), False, False, "none")
    assert [(m.source, m.target, m.readonly) for m in opts.mounts] == [("/data", "/in", True)]
    defaults = options.parse(_raw_options(_args("img", "ls", "-l"), "/x.sqsh"), "/")
    assert (defaults.writable, defaults.entrypoint, defaults.mpi) == (None, None, None)


def test_errors_name_runs_options_not_the_plugins():
    with pytest.raises(HpcctlError) as err, _named_as_run_options():
        options.parse(_raw_options(_args("--mounts", "/a:rel", "img"), "/x.sqsh"), "/")
    assert str(err.value).startswith("--mounts: destination 'rel' in '/a:rel' is not absolute")


def test_writable_and_readonly_exclude_each_other():
    result = subprocess.run([sys.executable, "-m", "hpcctl", "run", "--writable", "--readonly", "img", "true"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "not allowed with argument --writable" in result.stderr


def test_only_root_may_run():
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    result = subprocess.run([*as_user, sys.executable, "-m", "hpcctl", "run", "img", "true"], capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert result.stderr == ("hpcctl: error: hpcctl run must run as root: it mounts the image and then becomes the "
                             "user (run it with sudo; the command then runs as you, or as --user NAME)\n")
