"""What users cannot do through the plugin: escape the site's mount policy, read what they could not read,
redirect the plugin's Python, or gain privileges from the image."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.plugin_helpers import NO_MPI, image, srun, work

pytestmark = pytest.mark.integration
__all__ = ["image", "work"]  # module fixtures


def one_error_line(result) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("source", ["/etc/passwd", "/var/spool/slurmd", "/run/munge"])
def test_denied_prefixes(sandbox, work, image, source):
    line = one_error_line(srun(sandbox, f"--container-image={image}", NO_MPI,
                               f"--container-mounts={source}:/x", "true", cwd=work))
    assert line.startswith("srun: error: --container-mounts: ") and "does not let users mount" in line


def test_symlink_to_a_denied_prefix(sandbox, work, image):
    link = work / "innocent"
    link.symlink_to("/etc")
    line = one_error_line(srun(sandbox, f"--container-image={image}", NO_MPI,
                               f"--container-mounts={link}:/x", "true", cwd=work))
    assert "(= /etc) is under /etc" in line


@pytest.fixture
def root_dir():
    """A root-owned directory outside the test user's tree (sandbox.workdir() chowns that tree to the user)."""
    path = tempfile.mkdtemp(prefix="hpcctl-root-only-")
    yield Path(path)
    shutil.rmtree(path)


def test_sources_the_user_cannot_read(sandbox, work, image, root_dir):
    private = root_dir  # mode 0700
    r = srun(sandbox, f"--container-image={image}", NO_MPI, f"--container-mounts={private}:/x", "true", cwd=work)
    assert r.returncode != 0
    assert f"hpcctl: error: --container-mounts: {private} is not readable by you" in r.stderr, r.stderr


def test_image_the_user_cannot_read(sandbox, work, image, root_dir):
    root_dir.chmod(0o755)
    secret = root_dir / "secret.sqsh"
    secret.write_bytes(open(image, "rb").read())
    secret.chmod(0o600)
    line = one_error_line(srun(sandbox, f"--container-image={secret}", NO_MPI, "true", cwd=work))
    assert f"--container-image: {secret} is not readable by you" in line


def test_plugin_python_ignores_the_users_environment(sandbox, work, image):
    evil = work / "evil"
    evil.mkdir()
    marker = work / "pwned"
    (evil / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    subprocess.run(["chown", "-R", f"{sandbox.user}:{sandbox.user}", str(evil)], check=True)
    env = {"PYTHONPATH": str(evil), "PYTHONHOME": "/nonexistent", "PYTHONSTARTUP": str(evil / "sitecustomize.py"),
           "PYTHONINSPECT": "1"}
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "sh", "-c", "cat /etc/marker", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()


def test_no_new_privileges_and_nosuid(sandbox, work, image):
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "sh", "-c",
             "grep NoNewPrivs /proc/self/status; /opt/suid/id -u; grep -c nosuid /proc/self/mounts", cwd=work)
    out = r.stdout.split()
    assert out[:3] == ["NoNewPrivs:", "1", "2001"], r.stderr


def test_plugin_python_ignores_the_users_ld_preload(sandbox, work, image):
    """LD_PRELOAD reaches the user's own processes (srun, the task), never the plugin's root helper."""
    log = work / "preload.log"
    source = work / "spy.c"
    source.write_text('#include <stdio.h>\n#include <unistd.h>\n'
                      "__attribute__((constructor)) static void spy(void) {\n"
                      f'    FILE *f = fopen("{log}", "a"); char exe[256] = "";\n'
                      "    readlink(\"/proc/self/exe\", exe, sizeof(exe) - 1);\n"
                      '    if (f) { fprintf(f, "%u %s\\n", geteuid(), exe); fclose(f); }\n}\n')
    spy = work / "spy.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(spy), str(source)], check=True)
    log.touch()
    log.chmod(0o666)
    r = srun(sandbox, f"--container-image={image}", NO_MPI, "true", cwd=work, env={"LD_PRELOAD": str(spy)})
    assert r.returncode == 0, r.stderr
    loaded = log.read_text().split("\n")
    assert any(line.endswith("/srun") for line in loaded), loaded  # the spy works ...
    assert not any("python" in line or line.startswith("0 ") for line in loaded), loaded  # ... but not as root


@pytest.fixture(scope="module")
def symlink_image(sandbox, tmp_path_factory):
    """busybox with /opt/shm -> /dev/shm: a path an image controls that leads into a host directory."""
    import uuid

    from image_layers import e, push_to_sandbox
    busybox = Path("/bin/busybox").read_bytes()
    layers = [[e("bin", "dir"), e("bin/busybox", data=busybox, mode=0o755), e("bin/sh", "symlink", link="busybox"),
               e("bin/true", "symlink", link="busybox"), e("opt", "dir"), e("opt/shm", "symlink", link="/dev/shm")]]
    tag = uuid.uuid4().hex[:12]
    push_to_sandbox(sandbox.registry, "hpcctl-test/symlink-escape", tag, layers, tmp_path_factory.mktemp("escape"))
    return f"{sandbox.registry}/hpcctl-test/symlink-escape:{tag}"


def test_an_image_symlink_never_leads_root_to_write_on_the_host(sandbox, work, symlink_image):
    """Mount points and the working directory are made by root: through an image's symlink they used to land in a
    host directory bound into the container (here the host's /dev/shm), owned by root."""
    import uuid
    mount_at, workdir = f"hpcctl-escape-{uuid.uuid4().hex[:8]}", f"hpcctl-escape-{uuid.uuid4().hex[:8]}"
    source = work / "escape-src"
    source.mkdir(exist_ok=True)
    r = srun(sandbox, f"--container-image={symlink_image}", NO_MPI, f"--container-mounts={source}:/opt/shm/{mount_at}",
             "true", cwd=work)
    assert r.returncode != 0
    assert f"hpcctl: error: cannot mount {source} on /opt/shm/{mount_at}: No such file or directory" in r.stderr
    assert not Path("/dev/shm", mount_at).exists()
    r = srun(sandbox, f"--container-image={symlink_image}", NO_MPI, f"--container-workdir=/opt/shm/{workdir}",
             "true", cwd=work)
    made = Path("/dev/shm", workdir)
    assert not made.exists() or made.stat().st_uid != 0, "root made a directory in the host's /dev/shm"
    shutil.rmtree(made, ignore_errors=True)
