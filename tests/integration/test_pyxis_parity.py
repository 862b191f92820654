"""What a pyxis user sees, checked against pyxis 0.24 and enroot (pyxis_slurmstepd.c, args.c, tests/*.bats; enroot's
docker.sh rc script and enroot-switchroot): environment rules, the entrypoint, working directories, names and the
options pyxis refuses."""

import pytest

from tests.integration.plugin_helpers import NO_MPI, image, push_busybox_variant, srun, work

pytestmark = pytest.mark.integration
__all__ = ["image", "work"]  # module fixtures

EP_SCRIPT = ('echo "ep: HOSTVAR=${HOSTVAR-unset} KEPT=${KEPT-unset} IMG=$IMG"; export FROM_EP=ep; cd /usr/sbin; '
             'exec "$@"')


@pytest.fixture(scope="module")
def variant(sandbox):
    """Push a busybox variant once per module: variant(tag, env, entrypoint=None, workdir="/") -> reference."""
    pushed = {}

    def push(tag, env, entrypoint=None, workdir="/"):
        if tag not in pushed:
            push_busybox_variant(sandbox.registry, "hpcctl/parity", tag, env, entrypoint=entrypoint, workdir=workdir)
            pushed[tag] = f"{sandbox.registry}/hpcctl/parity:{tag}"
        return pushed[tag]
    return push


@pytest.fixture(scope="module")
def ep_image(variant):
    return variant("entrypoint", ["IMG=image"], entrypoint=["/bin/sh", "-c", EP_SCRIPT, "entrypoint"])


def run(sandbox, cwd, *args, env=None):
    r = srun(sandbox, *args, cwd=cwd, env=env)
    return r.returncode, r.stdout, r.stderr


# Item 4: environment rules


def test_container_env_unset_on_the_host_keeps_the_image_value(sandbox, work, variant):
    """pyxis: --container-env names go to enroot's environ() only when set on the host ([ -n "${NAME-}" ]); the
    image's value stays otherwise."""
    ref = variant("env", ["FROM_IMAGE=image", "BOTH=image"])
    show = ["sh", "-c", "echo ${FROM_IMAGE-unset} ${BOTH-unset}"]
    code, out, err = run(sandbox, work, f"--container-image={ref}", NO_MPI, "--container-env=FROM_IMAGE,BOTH", *show,
                         env={"BOTH": "host"})
    assert (code, out.split()) == (0, ["image", "host"]), err
    code, out, err = run(sandbox, work, f"--container-image={ref}", NO_MPI, *show,
                         env={"BOTH": "host", "PYXIS_CONTAINER_ENV": "FROM_IMAGE,BOTH"})
    assert (code, out.split()) == (0, ["image", "host"]), err


def test_library_path_gets_the_injection_directory_only_with_injected_libraries(sandbox, work, variant):
    """/.hpcctl/lib comes first on LD_LIBRARY_PATH when hpcctl/inject binds libraries there (the site's MPI here),
    and only then; the image's value wins over the host's, as in pyxis' env.bats."""
    ref = variant("ldpath", ["LD_LIBRARY_PATH=/image/lib"])
    show = ["sh", "-c", "echo $LD_LIBRARY_PATH; ls /.hpcctl/lib >/dev/null 2>&1 && echo injected || echo none"]
    host = {"LD_LIBRARY_PATH": "/host/lib"}
    code, out, err = run(sandbox, work, f"--container-image={ref}", NO_MPI, *show, env=host)
    assert (code, out.split()) == (0, ["/image/lib", "none"]), err
    code, out, err = run(sandbox, work, f"--container-image={ref}", *show, env=host)
    assert (code, out.split()) == (0, ["/.hpcctl/lib:/image/lib", "injected"]), err


@pytest.mark.parametrize("args, expected", [
    ([], "C.UTF-8 unset unset C"),
    (["--container-env=LANG,LC_ALL"], "de_DE.UTF-8 unset de_DE.UTF-8 C"),
])
def test_host_locale_is_dropped_as_pyxis_drops_it(sandbox, work, variant, args, expected):
    """pyxis unsets LANG, LANGUAGE and LC_ALL from the task (container_deny_env) unless --container-env names them;
    the image's values apply; other LC_* pass."""
    ref = variant("locale", ["LANG=C.UTF-8"])
    host = {"LANG": "de_DE.UTF-8", "LANGUAGE": "de", "LC_ALL": "de_DE.UTF-8", "LC_TIME": "C"}
    code, out, err = run(sandbox, work, f"--container-image={ref}", NO_MPI, *args, "sh", "-c",
                         'echo "${LANG-unset} ${LANGUAGE-unset} ${LC_ALL-unset} ${LC_TIME-unset}"', env=host)
    assert (code, out.strip()) == (0, expected), err


def test_entrypoint_sees_the_container_env_and_the_task_gets_the_rest_after(sandbox, work, ep_image):
    """pyxis runs the entrypoint once per node in the container's first process, with enroot's environment (the
    image's, enroot's own, the --container-env names); the task gets the host's other variables on top, the
    entrypoint's exports, and starts where the entrypoint left."""
    host = {"HOSTVAR": "h", "KEPT": "k"}
    code, out, err = run(sandbox, work, f"--container-image={ep_image}", NO_MPI, "-N1", "-n3", "--container-entrypoint",
                         "--container-entrypoint-log", "--container-env=KEPT", "sh", "-c",
                         'echo task $HOSTVAR $KEPT $FROM_EP $(pwd)', env=host)
    assert code == 0, err
    assert out.split("\n")[:3] == ["task h k ep /usr/sbin"] * 3, err
    assert (out + err).count("ep: HOSTVAR=unset KEPT=k IMG=image") == 1, out + err


@pytest.mark.parametrize("args, env, shown", [
    ([], {}, False),
    (["--container-entrypoint-log"], {}, True),
    ([], {"PYXIS_CONTAINER_ENTRYPOINT_LOG": "1"}, True),
])
def test_entrypoint_output_only_with_entrypoint_log(sandbox, work, ep_image, args, env, shown):
    code, out, err = run(sandbox, work, f"--container-image={ep_image}", NO_MPI, "--container-entrypoint", *args,
                         "sh", "-c", "echo task $FROM_EP", env=env)
    assert (code, out.strip()) == (0, "task ep"), err
    assert ("ep: HOSTVAR" in out + err) == shown, out + err


def test_entrypoint_that_never_runs_the_command_fails_with_its_output(sandbox, work, variant):
    ref = variant("broken-ep", [], entrypoint=["/bin/sh", "-c", "echo broken-entrypoint-says-why; exit 3", "x"])
    code, out, err = run(sandbox, work, f"--container-image={ref}", NO_MPI, "--container-entrypoint", "echo", "task")
    assert code != 0 and "task" not in out
    errors = [line for line in err.split("\n") if line.startswith("hpcctl: error:")]
    assert len(errors) == 1 and "entrypoint" in errors[0] and "--no-container-entrypoint" in errors[0], err
    assert "broken-entrypoint-says-why" in err


# Item 5: working directories


def test_default_working_directory_is_the_images_workdir(sandbox, work, variant):
    """enroot's rc script does cd "${WORKDIR:-/}": the image's WORKDIR wins over the submit directory."""
    ref = variant("workdir", [], workdir="/usr/sbin")
    code, out, err = run(sandbox, work, f"--container-image={ref}", NO_MPI, "pwd")
    assert (code, out.strip()) == (0, "/usr/sbin"), err


def test_workdir_that_does_not_exist_fails(sandbox, work, image):
    """pyxis: chdir(--container-workdir) fails the task ("couldn't chdir to /pyxis: No such file or directory")."""
    code, out, err = run(sandbox, work, f"--container-image={image}", NO_MPI, "--container-workdir=/missing",
                         "--container-writable", "sh", "-c", "pwd; ls -d /missing")
    assert code != 0 and out == "", out
    errors = [line for line in err.split("\n") if line.startswith("hpcctl: error:")]
    assert len(errors) == 1 and "/missing: No such file or directory" in errors[0], err


@pytest.mark.parametrize("workdir, expected", [("../", "/"), ("etc", "/etc"), ("/opt/suid/..", "/opt")])
def test_relative_workdir_is_resolved_from_the_container_root(sandbox, work, image, workdir, expected):
    """pyxis changes to --container-workdir right after joining the container, whose root is then the cwd."""
    code, out, err = run(sandbox, work, f"--container-image={image}", NO_MPI, f"--container-workdir={workdir}", "pwd")
    assert (code, out.strip()) == (0, expected), err


def test_missing_submit_directory_notice_once_per_step(sandbox, image):
    code, out, err = run(sandbox, f"/home/{sandbox.user}", f"--container-image={image}", NO_MPI, "-N2", "-n4",
                         "--no-container-mount-home", "pwd")
    assert (code, out.split()) == (0, ["/"] * 4), err
    assert err.count("does not exist in the container") == 1, err


def test_joined_step_starts_in_the_containers_working_directory(sandbox, variant):
    """pyxis' exec.bats "attach to running container after directory change": a joined step starts in the image's
    WORKDIR (or /), not where the other step went, nor in the submit directory."""
    wd_image = variant("workdir", [], workdir="/usr/sbin")
    plain = f"{sandbox.registry}/hpcctl/busybox:latest"
    job = sandbox.sbatch(
        "#!/bin/sh\n"
        f"srun --overlap --container-image={wd_image} {NO_MPI} --container-name=wd sh -c 'cd /var; sleep 20' &\n"
        f"srun --overlap --container-image={plain} {NO_MPI} --container-name=plain sh -c 'cd /var; sleep 20' &\n"
        f"until srun --overlap --container-name=wd:exec {NO_MPI} true 2>/dev/null && "
        f"srun --overlap --container-name=plain:exec {NO_MPI} true 2>/dev/null; do sleep 0.3; done\n"
        f"srun --overlap --container-name=wd {NO_MPI} pwd\n"
        f"srun --overlap --container-name=plain {NO_MPI} pwd\n"
        f"srun --overlap --container-name=wd {NO_MPI} --container-workdir=/tmp pwd\n"
        "scancel --signal=KILL $SLURM_JOB_ID.0 $SLURM_JOB_ID.1\nwait\n", "-N1")
    assert job.output.split("\n")[:3] == ["/usr/sbin", "/", "/tmp"], job.output


# Item 5: names


def test_unnamed_container_is_joinable_as_jobid_stepid_while_it_runs(sandbox, image):
    """pyxis names an unnamed container JOBID.STEPID (exec.bats "attach to running unnamed container") and removes
    it when its step ends."""
    job = sandbox.sbatch(
        "#!/bin/sh\n"
        f"srun --overlap --container-image={image} {NO_MPI} sh -c 'readlink /proc/self/ns/mnt > ns0; sleep 20' &\n"
        "until [ -s ns0 ]; do sleep 0.2; done\n"
        f"srun --overlap --container-name=$SLURM_JOB_ID.0 {NO_MPI} readlink /proc/self/ns/mnt > ns1\n"
        "cmp -s ns0 ns1 && echo same-namespace\n"
        "scancel --signal=KILL $SLURM_JOB_ID.0\nwait\n"
        f"srun --container-name=$SLURM_JOB_ID.0 {NO_MPI} true; echo after-end=$?\n", "-N1")
    lines = job.output.split("\n")
    assert "same-namespace" in lines, job.output
    assert "after-end=0" not in lines and any(line.startswith("after-end=") for line in lines), job.output


def test_exec_on_a_container_that_is_not_running_fails(sandbox, image):
    """pyxis: "exec" flag was passed to --container-name but the container is not running."""
    job = sandbox.sbatch(
        "#!/bin/sh\n"
        f"srun --container-image={image} {NO_MPI} --container-name=stopped true\n"
        f"srun --container-name=stopped:exec {NO_MPI} echo joined; echo exec=$?\n"
        f"srun --container-name=stopped {NO_MPI} echo reused; echo auto=$?\n")
    lines = job.output.split("\n")
    assert "joined" not in lines and "exec=0" not in lines, job.output
    assert any("'stopped' is not running" in line for line in lines), job.output
    assert "reused" in lines and "auto=0" in lines, job.output


# Item 5: what pyxis refuses, as one line


@pytest.mark.parametrize("args, named", [
    (["--container-env="], "--container-env"),
    (["--container-env=FOO,"], "--container-env"),
    (["--container-mounts="], "--container-mounts"),
    (["--container-mounts=:"], "--container-mounts"),
    (["--container-mounts=/tmp:"], "--container-mounts"),
    (["--container-mounts=/tmp:/a,,/tmp:/b"], "--container-mounts"),
    (["--container-workdir="], "--container-workdir"),
    (["--container-readonly", "--container-writable"], "--container-writable"),
    (["--container-writable", "--container-readonly"], "--container-readonly"),
    (["--container-mount-home", "--no-container-mount-home"], "--no-container-mount-home"),
    (["--no-container-remap-root", "--container-remap-root"], "--container-remap-root"),
    (["--container-entrypoint", "--no-container-entrypoint"], "--no-container-entrypoint"),
])
def test_invalid_arguments_are_refused_in_one_line(sandbox, work, image, args, named):
    code, out, err = run(sandbox, work, f"--container-image={image}", NO_MPI, *args, "echo", "ran")
    assert code != 0 and "ran" not in out
    lines = err.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("srun: error: --container-") and named in lines[0], err
    assert lines[0].endswith(")"), err  # the fix, in parentheses


def test_long_pyxis_container_mounts_reach_the_node(sandbox, work, image):
    """A PYXIS_CONTAINER_MOUNTS longer than 4 KB is used on the node, not dropped."""
    (work / "src").mkdir(exist_ok=True)
    sandbox.run(["chown", f"{sandbox.user}:{sandbox.user}", str(work / "src")])
    mounts = ",".join(f"{work}/src:/m/{i:02d}{'x' * 150}" for i in range(30))
    assert len(mounts) > 4096
    code, out, err = run(sandbox, work, f"--container-image={image}", NO_MPI, "sh", "-c", "ls /m | wc -l",
                         env={"PYXIS_CONTAINER_MOUNTS": mounts})
    assert (code, out.strip()) == (0, "30"), err
