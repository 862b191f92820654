"""Layer flattening checked against the real Docker daemon (issue 13): an image built by Docker from a debootstrap'd
Debian tree, pushed to the sandbox registry and pulled with `hpcctl image pull`, must hold exactly what
`docker export` of the same image holds, path by path, but for the documented differences: setuid/setgid cleared
on files (setuid on directories), device nodes dropped, mtimes past 2106 clamped, a hardlink to a non-regular entry
made a copy of it. Docker writes no xattr but security.capability into layers, so there are no `user.*` ones to
compare. `hpcctl run` and `srun --container-image` of the image run its perl."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from image_site import ImageSite
from test_image_dockerd import docker_host  # noqa: F401 (the module's dockerd, on its own socket)

from hpcctl.sandbox.test_images import debian_tree
from tests.integration.plugin_helpers import NO_MPI, srun

pytestmark = pytest.mark.integration

MAX_MTIME = 0xFFFFFFFF
# the container's own (`docker create` puts them in its init layer, over the image's)
CONTAINER_PATHS = {".dockerenv", "dev/console", "dev/pts", "dev/shm", "etc/hostname", "etc/hosts", "etc/resolv.conf",
                   "etc/mtab"}
INIT_LAYER_DIRS = ("dev", "etc")  # their mtimes in the export are the container's
LONG = "l" * 120 + "/" + "m" * 150

DOCKERFILE = f"""FROM hpcctl-test/debian-base:issue13
RUN chmod 0755 /usr/bin/perl
RUN rm /usr/bin/uncompress
RUN mkdir -p /e/d /e/dir2file /e/many /e/{LONG} \\
 && echo old > /e/a && ln /e/a /e/b && ln /e/a /e/c \\
 && echo p > /e/p1 && ln /e/p1 /e/p2 && echo m > /e/m1 && ln /e/m1 /e/m2 && echo t > /e/t1 && ln /e/t1 /e/t2 \\
 && echo q > /e/d/q && ln /e/d/q /e/q2 \\
 && ln -s target /e/sym && ln -P /e/sym /e/sym2 && mkfifo /e/fifo && ln /e/fifo /e/fifo2 \\
 && echo f > /e/dir2file/inner && echo x > /e/file2dir && ln -s /etc /e/sym2dir && echo s > /e/file2sym \\
 && echo long > /e/{LONG}/file && ln /e/{LONG}/file /e/{LONG}/link \\
 && echo u > /e/bigid && chown 3000000:3000001 /e/bigid \\
 && truncate -s 32M /e/sparse && printf x | dd of=/e/sparse bs=1 seek=1000000 conv=notrunc status=none \\
 && cd /e/many && for i in $(seq 2000); do echo $i > f$i; done \\
 && mkdir -m 2775 /shared && echo s > /e/suid && chmod 6755 /e/suid && touch -d '2200-01-01 00:00:00' /e/late
RUN echo x >> /e/a && rm /e/p1 && chmod 0700 /e/m2 && rm /e/t2 && rm -rf /e/d && mkdir /e/d && echo n > /e/d/new \\
 && rm -rf /e/dir2file && echo file > /e/dir2file && rm /e/file2dir && mkdir /e/file2dir \\
 && rm /e/sym2dir && mkdir /e/sym2dir && rm /e/file2sym && ln -s /e/a /e/file2sym && rm /e/many/f7
"""


@pytest.fixture(scope="module")
def docker(docker_host):  # noqa: F811
    return ["docker", "--host", docker_host]


@pytest.fixture(scope="module")
def built_image(sandbox, docker, tmp_path_factory):
    """The Dockerfile's image, built once per run with no network and pushed to the sandbox registry."""
    work = tmp_path_factory.mktemp("docker-export")
    tree = debian_tree(work / "debootstrap.log")
    tar = subprocess.Popen(["tar", "-C", str(tree), "--exclude", "./.complete", "-cf", "-", "."],
                           stdout=subprocess.PIPE)
    subprocess.run([*docker, "import", "-", "hpcctl-test/debian-base:issue13"], stdin=tar.stdout, check=True,
                   capture_output=True, timeout=300)
    tar.stdout.close()
    assert tar.wait() == 0
    name = f"{sandbox.registry}/hpcctl/flatten-check:issue13"
    (work / "Dockerfile").write_text(DOCKERFILE)
    build = subprocess.run([*docker, "build", "--network=none", "-q", "-t", name, str(work)], capture_output=True,
                           text=True, timeout=300, env={**os.environ, "DOCKER_BUILDKIT": "0"}, check=False)
    assert build.returncode == 0, build.stderr
    subprocess.run([*docker, "push", "-q", name], check=True, capture_output=True, timeout=300)
    return name


def exported(docker: list, image: str, work: Path) -> dict:
    """path -> what `docker export` of a container of ``image`` holds there, with the documented differences."""
    container = subprocess.run([*docker, "create", image, "/bin/true"], check=True, capture_output=True,
                               text=True).stdout.strip()
    archive = work / "export.tar"
    try:
        with open(archive, "wb") as out:
            subprocess.run([*docker, "export", container], stdout=out, check=True, timeout=300)
    finally:
        subprocess.run([*docker, "rm", container], capture_output=True, check=False)
    entries, groups = {}, {}
    with tarfile.open(archive) as tf:
        for member in tf:
            path = member.name.strip("/").removeprefix("./")
            if not path or path in CONTAINER_PATHS or member.ischr() or member.isblk():
                continue
            if member.islnk():
                target = member.linkname.strip("/").removeprefix("./")
                entries[path] = entries[target]
                if entries[target]["type"] == "file":
                    groups.setdefault(target, {target}).add(path)
                continue
            entries[path] = _exported_entry(member, tf)
    return {path: {**entry, "links": frozenset(_group_of(path, groups))} for path, entry in entries.items()}


def _exported_entry(member: tarfile.TarInfo, tf: tarfile.TarFile) -> dict:
    kind = "dir" if member.isdir() else "file" if member.isreg() else "symlink" if member.issym() else "fifo"
    mode = member.mode & (0o3777 if kind == "dir" else 0o1777)
    entry = {"type": kind, "mode": mode, "uid": member.uid, "gid": member.gid, "mtime": min(member.mtime, MAX_MTIME)}
    if kind == "file":
        entry.update(size=member.size, sha256=hashlib.sha256(tf.extractfile(member).read()).hexdigest())
    if kind == "symlink":
        entry["target"] = member.linkname
    return entry


def _group_of(path: str, groups: dict) -> set:
    for group in groups.values():
        if path in group:
            return group
    return set()


def in_squashfs(squashfs: str, work: Path) -> dict:
    """path -> what the squashfs holds there."""
    root = work / "root"
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(root), squashfs], check=True, capture_output=True)
    entries, inodes = {}, {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(directory, name)
            path = str(full.relative_to(root))
            if path in CONTAINER_PATHS:
                continue
            st = full.lstat()
            entries[path] = _squashfs_entry(full, st)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                inodes.setdefault(st.st_ino, set()).add(path)
    by_path = {path: group for group in inodes.values() for path in group}
    return {path: {**entry, "links": frozenset(by_path.get(path, ()))} for path, entry in entries.items()}


def _squashfs_entry(full: Path, st: os.stat_result) -> dict:
    kind = ("dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode)
            else "symlink" if stat.S_ISLNK(st.st_mode) else "fifo" if stat.S_ISFIFO(st.st_mode) else "other")
    entry = {"type": kind, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
             "mtime": int(st.st_mtime)}
    if kind == "file":
        digest = hashlib.sha256()
        with open(full, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        entry.update(size=st.st_size, sha256=digest.hexdigest())
    if kind == "symlink":
        entry["target"] = os.readlink(full)
    return entry


def test_the_squashfs_holds_what_docker_export_holds(built_image, docker, tmp_path):
    image = ImageSite().pull(built_image)
    want = exported(docker, built_image, tmp_path)
    got = in_squashfs(image["path"], tmp_path)
    assert sorted(set(want) ^ set(got)) == []
    for path in INIT_LAYER_DIRS:
        del want[path]["mtime"], got[path]["mtime"]
    differing = {path: {key: (want[path].get(key), got[path].get(key)) for key in want[path].keys() | got[path].keys()
                        if want[path].get(key) != got[path].get(key)}
                 for path in want if want[path] != got[path]}
    assert differing == {}, f"docker export vs squashfs: {differing}"
    assert got["usr/bin/perl"]["mode"] == 0o755 and got["usr/bin/perl5.36.0"]["links"] == frozenset()
    assert "usr/bin/uncompress" not in got and got["usr/bin/gunzip"]["type"] == "file"
    assert got["e/b"]["links"] == {"e/b", "e/c"} and got["e/late"]["mtime"] == MAX_MTIME
    assert got["shared"]["mode"] == 0o2775 and got["e/suid"]["mode"] == 0o755
    assert got["e/sym2"]["type"] == "symlink" and got["e/fifo2"]["type"] == "fifo"


def test_hpcctl_run_and_srun_of_the_image_run_perl(sandbox, built_image):
    run = sandbox.run([sys.executable, "-m", "hpcctl", "run", "--node", "n1", built_image, "perl", "-v"],
                      env={"SUDO_USER": sandbox.user}, check=False, timeout=120, cwd=sandbox.workdir())
    assert run.returncode == 0 and "This is perl 5" in run.stdout, run.stderr
    job = srun(sandbox, f"--container-image={built_image}", NO_MPI, "perl", "-v", cwd=sandbox.workdir())
    assert job.returncode == 0 and "This is perl 5" in job.stdout, job.stderr
