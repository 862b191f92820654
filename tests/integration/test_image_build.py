"""`hpcctl image build` (issue 15): a Singularity .def and a Dockerfile built by a real Docker daemon (no network),
pushed to the sandbox registry and run with `srun --container-image` as the sandbox user on both nodes."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from tests.conftest import hpcctl_cmd
from tests.integration.dockerd_helpers import running_dockerd
from tests.integration.plugin_helpers import NO_MPI, srun

pytestmark = pytest.mark.integration

DEF = """\
Bootstrap: docker
From: {registry}/hpcctl/busybox:latest

%files
    data.txt /opt/data.txt
    *.cfg /opt/conf

%post
    mkdir -p /opt/out
    cd /opt/out
    for i in 1 2; do
        echo "post line $i" >> steps.txt
    done
    echo "post saw GREETING='$GREETING'" >> steps.txt

%environment
    export GREETING="hello from %environment"
    export PATH=/opt/tools:$PATH

%runscript
    echo "runscript got: $@"
    echo "runscript sees: $GREETING"

%labels
    Author hpcctl tests

%help
    Prints its arguments.
"""

DOCKERFILE = """\
FROM {registry}/hpcctl/busybox:latest
RUN mkdir -p /opt && echo "built by a Dockerfile" > /opt/built.txt
ENV FROM_DOCKERFILE=yes
"""


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory):
    """A Docker daemon of the tests' own (not the node's default socket): the builds' machine."""
    root = tmp_path_factory.mktemp("dockerd-build")
    with running_dockerd(root, f"unix://{root}/docker.sock") as host:
        yield host


def build(sandbox, recipe, tag: str, docker_host: str | None, *extra: str, home=None):
    """`hpcctl image build` as root; ``home``: where its registry credentials are looked up."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    if home:
        env["HOME"] = str(home)
    return subprocess.run(hpcctl_cmd("image", "build", str(recipe), "-t", tag, "--network=none", "--node=n1", *extra),
                          capture_output=True, text=True, env=env, timeout=300)


def image_config(docker_host: str, name: str) -> dict:
    out = subprocess.run(["docker", "image", "inspect", name], capture_output=True, text=True, check=True,
                         env={**os.environ, "DOCKER_HOST": docker_host}).stdout
    return json.loads(out)[0]["Config"]


def test_a_def_recipe_is_built_pushed_and_run_as_apptainer_would(sandbox, tmp_path, docker_host):
    (tmp_path / "data.txt").write_text("from %files\n")
    for name in ("a.cfg", "b.cfg"):
        (tmp_path / name).write_text(f"{name} by pattern\n")
    recipe = tmp_path / "tool.def"
    recipe.write_text(DEF.format(registry=sandbox.registry))
    tag = f"{sandbox.registry}/hpcctl-test/def-build:{uuid.uuid4().hex[:8]}"
    r = build(sandbox, recipe, tag, docker_host, "--push")
    assert r.returncode == 0, r.stderr
    assert f"pushed {tag}@sha256:" in r.stdout
    config = image_config(docker_host, tag)
    assert config["Cmd"] == ["/.singularity.d/runscript"] and config["Labels"]["Author"] == "hpcctl tests"

    work = sandbox.workdir()
    r = srun(sandbox, "-N2", "-n2", f"--container-image={tag}", NO_MPI, "sh", "-c",
             'echo "$GREETING|$PATH"; /.singularity.d/runscript a "b c"; cat /opt/out/steps.txt /opt/data.txt '
             "/opt/conf/*.cfg /.singularity.d/runscript.help; ls /.hpcctl-post.sh 2>/dev/null; id -un", cwd=work,
             timeout=180)
    assert r.returncode == 0, r.stderr
    expected = ["hello from %environment|/opt/tools:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "runscript got: a b c", "runscript sees: hello from %environment",
                "post line 1", "post line 2", "post saw GREETING=''", "from %files", "a.cfg by pattern",
                "b.cfg by pattern", "Prints its arguments.",
                sandbox.user]
    assert sorted(r.stdout.splitlines()) == sorted(expected * 2)


def test_a_dockerfile_is_built_pushed_and_run(sandbox, tmp_path, docker_host):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE.format(registry=sandbox.registry))
    tag = f"{sandbox.registry}/hpcctl-test/dockerfile-build:{uuid.uuid4().hex[:8]}"
    r = build(sandbox, dockerfile, tag, docker_host, "--push", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"built {tag} (sha256:") and "/cache/images/" in r.stdout
    r = srun(sandbox, f"--container-image={tag}", NO_MPI, "sh", "-c", "cat /opt/built.txt; echo $FROM_DOCKERFILE",
             cwd=sandbox.workdir(), timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["built by a Dockerfile", "yes"]


def test_an_unsupported_section_is_refused_in_one_line_before_anything_builds(sandbox, tmp_path):
    recipe = tmp_path / "setup.def"
    recipe.write_text(f"Bootstrap: docker\nFrom: {sandbox.registry}/hpcctl/busybox:latest\n\n"
                      "%setup\n    touch ${SINGULARITY_ROOTFS}/x\n\n%post\n    true\n")
    r = build(sandbox, recipe, f"{sandbox.registry}/hpcctl-test/never:v1", "unix:///nonexistent/docker.sock")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        f"hpcctl: error: {recipe}:4: %setup is not supported: it runs on the build host as root; copy files in "
        "with %files instead"]


def test_without_a_docker_daemon_the_build_says_so_in_one_line(sandbox, tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE.format(registry=sandbox.registry))
    r = build(sandbox, dockerfile, f"{sandbox.registry}/hpcctl-test/never:v1", "unix:///nonexistent/docker.sock")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Docker daemon runs on this node" in lines[0]
    assert "builds need a Docker daemon on the machine that builds" in lines[0]


def test_push_to_a_registry_with_auth_uses_the_users_credentials(sandbox, tmp_path, docker_host):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE.format(registry=sandbox.registry))
    tag = f"{sandbox.auth_registry}/private/dockerfile-build:{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    home.mkdir()
    refused = build(sandbox, dockerfile, tag, docker_host, "--push", "--quiet", home=home)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].startswith(f"hpcctl: error: pushing {tag} failed: ")
    netrc = home / ".config/enroot/.credentials"
    netrc.parent.mkdir(parents=True)
    netrc.write_text(f"machine {sandbox.auth_registry} login {sandbox.auth_user} password {sandbox.auth_password}\n")
    r = build(sandbox, dockerfile, tag, docker_host, "--push", "--quiet", home=home)
    assert r.returncode == 0, r.stderr
    assert f"pushed {tag}@sha256:" in r.stdout
