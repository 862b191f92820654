"""The container is the job user's, as in pyxis/enroot (issue 11): the image's files are theirs to change through the
overlay, package managers work with --container-remap-root, names resolve, and steps that start together never
trip over each other's files. The cached squashfs never changes."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.integration.plugin_helpers import srun

pytestmark = pytest.mark.integration

DEBIAN = "127.0.0.1:5000/hpcctl/debian:bookworm"
PYTHON = "127.0.0.1:5000/hpcctl/python:bookworm"  # Debian with python3-pip
NO_MPI = "--container-mpi=none"


@pytest.fixture(scope="module")
def work(sandbox):
    return sandbox.workdir()


@pytest.fixture(scope="module")
def deb(work, sandbox):
    """A local .deb that installs /usr/bin/hpcctl-hello."""
    tree = work / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text("Package: hpcctl-hello\nVersion: 1.0\nArchitecture: all\n"
                                          "Maintainer: hpcctl <t@example.org>\nDescription: test package\n")
    script = tree / "usr/bin/hpcctl-hello"
    script.write_text("#!/bin/sh\necho hello-from-deb\n")
    script.chmod(0o755)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(work / "hello.deb")], check=True,
                   capture_output=True)
    subprocess.run(["chown", "-R", f"{sandbox.user}:{sandbox.user}", str(work)], check=True)
    return work / "hello.deb"


@pytest.fixture(scope="module")
def wheel(work, sandbox) -> Path:
    """A pure-Python wheel file (module hpcctl_wheel_test), made as the wheel format says."""
    name, version = "hpcctl_wheel_test", "1.0"
    files = {f"{name}/__init__.py": b"VALUE = 'wheel-installed'\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                                     .encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hpcctl-test\n"
                                                  b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for path, data in files.items()]
    path = work / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
        archive.writestr(f"{name}-{version}.dist-info/RECORD",
                         "\n".join([*record, f"{name}-{version}.dist-info/RECORD,,"]) + "\n")
    subprocess.run(["chown", f"{sandbox.user}:{sandbox.user}", str(path)], check=True)
    return path


def cached_squashfs_digests() -> dict[str, str]:
    """Every node's cached squashfs files (the sandbox's nodes each have their own cache)."""
    caches = Path("/var/lib/hpcctl/nodes")
    return {str(p.relative_to(caches)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in caches.glob("*/cache/images/*.sqsh")}


def unchanged(before: dict[str, str]) -> bool:
    """Whether every squashfs cached ``before`` is still there with the same content (a node that had not cached
    the image yet pulls it: new files are fine)."""
    after = cached_squashfs_digests()
    return {name: after.get(name) for name in before} == before


def test_the_images_files_are_the_users_and_writable_through_the_overlay(sandbox, work):
    before = cached_squashfs_digests()
    r = srun(sandbox, "-N2", "-n2", f"--container-image={DEBIAN}", NO_MPI, "bash", "-c",
             "stat -c %U / /usr/lib /etc/apt; touch /newfile && echo touched; mkdir -p /usr/lib/python3/dist-packages"
             "/wheel_pkg && echo 'x = 1' > /usr/lib/python3/dist-packages/wheel_pkg/__init__.py && echo installed",
             cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split().count(sandbox.user) == 6 and r.stdout.count("touched") == 2, r.stdout
    assert r.stdout.count("installed") == 2
    assert unchanged(before)
    later = srun(sandbox, f"--container-image={DEBIAN}", NO_MPI, "ls", "/newfile", cwd=work)
    assert later.returncode != 0  # a new step has a fresh overlay


def test_pip_installs_a_wheel_into_the_images_site_packages_on_both_nodes(sandbox, work, wheel):
    before = cached_squashfs_digests()
    r = srun(sandbox, "-N2", "-n2", f"--container-image={PYTHON}", NO_MPI, f"--container-mounts={work}:/pkgs",
             "bash", "-c", f"pip install --no-index --break-system-packages /pkgs/{wheel.name} >/dev/null && "
             "python3 -c 'import hpcctl_wheel_test as m; print(m.VALUE, m.__file__)'", cwd=work, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split().count("wheel-installed") == 2, r.stdout
    assert all(line.endswith("/dist-packages/hpcctl_wheel_test/__init__.py") and not line.startswith("/home")
               for line in r.stdout.split() if line.endswith(".py"))
    assert unchanged(before)


def test_remap_root_runs_apt_and_dpkg_on_both_nodes(sandbox, work, deb):
    before = cached_squashfs_digests()
    r = srun(sandbox, "-N2", "-n2", "--container-remap-root", f"--container-image={DEBIAN}", NO_MPI,
             f"--container-mounts={work}:/pkgs", "bash", "-c",
             f"cat /proc/self/uid_map; echo HOME=$HOME; apt-get install -y /pkgs/{deb.name} >/dev/null 2>&1; "
             "hpcctl-hello; id -u", cwd=work, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("hello-from-deb") == 2, r.stdout + r.stderr
    uid = subprocess.run(["id", "-u", sandbox.user], capture_output=True, text=True).stdout.strip()
    assert r.stdout.split("\n")[0].split() == ["0", uid, "1"]
    assert r.stdout.count("HOME=/root") == 2
    assert unchanged(before)


def test_the_home_directory_is_at_root_with_remap_root(sandbox, work):
    r = srun(sandbox, "--container-remap-root", f"--container-image={DEBIAN}", NO_MPI, "bash", "-c",
             f"test -d /root/{work.parent.name} && echo home-at-root", cwd=work)
    assert r.stdout.strip() == "home-at-root", r.stderr


@pytest.mark.parametrize("remap", [[], ["--container-remap-root"]], ids=["user", "remap-root"])
def test_tasks_have_pyxis_seccomp_filter(sandbox, work, remap):
    r = srun(sandbox, *remap, f"--container-image={DEBIAN}", NO_MPI, "grep", "Seccomp:", "/proc/self/status",
             cwd=work)
    assert r.stdout.split() == ["Seccomp:", "2"], r.stderr


def test_names_resolve_as_on_the_host(sandbox, work):
    r = srun(sandbox, f"--container-image={DEBIAN}", NO_MPI, "bash", "-c",
             "cat /etc/resolv.conf; echo ---; getent hosts localhost", cwd=work)
    assert r.returncode == 0, r.stderr
    resolv, hosts = r.stdout.split("---\n")
    assert resolv == Path("/etc/resolv.conf").read_text()
    assert "localhost" in hosts


def test_steps_that_start_together_share_nothing_they_could_break(sandbox, work):
    """8 concurrent first steps of named containers in one allocation, 20 times: every one starts."""
    script = work / "burst.sh"
    script.write_text("#!/bin/bash\nfail=0\nfor round in $(seq 20); do\n  for i in $(seq 8); do\n"
                      f"    srun -n1 --overlap --container-image={DEBIAN} {NO_MPI} --container-name=c$round-$i true"
                      " || echo FAILED &\n  done\n  wait\ndone\necho done\n")
    subprocess.run(["chown", f"{sandbox.user}:{sandbox.user}", str(script)], check=True)
    job = sandbox.sbatch(script.read_text(), "-N1", "-n4", timeout=600)
    assert job.state == "COMPLETED", job.output
    assert "FAILED" not in job.output and "error" not in job.output.lower(), job.output
    assert "done" in job.output
