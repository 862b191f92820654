"""Every flag a site gives a mount reaches the mount the task sees (issue 12): checked in the container's
/proc/self/mountinfo, through `hpcctl run`, which executes the plugin's plan code."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

SANDBOX_SITE = Path("/etc/hpcctl/site.yaml")


@pytest.fixture(scope="module")
def sources():
    """Host directories to mount, one shared mount among them (for propagation), one with a tmpfs inside."""
    root = Path("/srv") / f"hpcctl-flags-{uuid.uuid4().hex[:8]}"
    for name in ("noexec", "nested", "shared", "slave", "unbindable", "plain"):
        (root / name).mkdir(parents=True)
    (root / "nested" / "inner").mkdir()
    mounted = [root / "nested" / "inner", root / "shared", root / "slave"]
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mounted[0])], check=True)
    for path in mounted[1:]:
        subprocess.run(["mount", "--bind", "--make-shared", str(path), str(path)], check=True)
        subprocess.run(["mount", "--make-shared", str(path)], check=True)
    yield root
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def site(sources, tmp_path_factory):
    doc = yaml.safe_load(SANDBOX_SITE.read_text())
    doc["mounts"] = [*doc.get("mounts", []),
                     {"source": f"{sources}/noexec", "target": "/m/noexec", "flags": ["noexec"]},
                     {"source": f"{sources}/nested", "target": "/m/nested", "flags": ["bind"]},
                     {"source": f"{sources}/nested", "target": "/m/rnested", "flags": ["rbind"]},
                     {"source": f"{sources}/shared", "target": "/m/shared", "flags": ["shared"]},
                     {"source": f"{sources}/slave", "target": "/m/slave", "flags": ["slave"]},
                     {"source": f"{sources}/unbindable", "target": "/m/unbindable", "flags": ["unbindable"]},
                     {"source": f"{sources}/plain", "target": "/m/plain"}]
    path = tmp_path_factory.mktemp("flags") / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def mountinfo(sandbox, site) -> dict[str, tuple[list[str], list[str]]]:
    """{mount point: (mount options, optional fields)} inside the container."""
    r = sandbox.run([sys.executable, "-m", "hpcctl", "--site", str(site), "run", "--node", "n1", "--mpi", "none",
                     f"{sandbox.registry}/hpcctl/busybox:latest", "--", "cat", "/proc/self/mountinfo"],
                    env={"SUDO_USER": sandbox.user}, check=True, timeout=120, cwd="/")
    out = {}
    for line in r.stdout.splitlines():
        fields = line.split()
        dash = fields.index("-")
        out[fields[4]] = (fields[5].split(","), fields[6:dash])
    return out


def test_flags_reach_the_mounts(sandbox, site):
    seen = mountinfo(sandbox, site)
    assert "noexec" in seen["/m/noexec"][0] and "noexec" not in seen["/m/plain"][0]
    assert {"nosuid", "nodev"} <= set(seen["/m/plain"][0])
    assert "/m/rnested/inner" in seen and "/m/nested/inner" not in seen  # bind is not recursive, rbind is
    assert any(f.startswith("shared:") for f in seen["/m/shared"][1])
    assert any(f.startswith("master:") for f in seen["/m/slave"][1])
    assert "unbindable" in seen["/m/unbindable"][1]
    assert seen["/m/plain"][1] == []  # private by default


def test_a_users_mount_flags_tmpfs_options_and_unmounts(sandbox, sources):
    """pyxis' --container-mounts flags: propagation and noexec on a bind, tmpfs options, umount:DST."""
    from tests.integration.plugin_helpers import srun

    work = sandbox.workdir()
    data = work / "data"
    data.mkdir()
    subprocess.run(["chown", "-R", f"{sandbox.user}:{sandbox.user}", str(work)], check=True)
    r = srun(sandbox, f"--container-image={sandbox.registry}/hpcctl/busybox:latest", "--container-mpi=none",
             f"--container-mounts={data}:/u:noexec+unbindable,tmpfs:/t:size=1m+mode=700+huge=within_size,"
             "umount:/etc/hosts", "cat", "/proc/self/mountinfo", cwd=work)
    assert r.returncode == 0, r.stderr
    seen = {}
    for line in r.stdout.splitlines():
        fields = line.split()
        dash = fields.index("-")
        seen[fields[4]] = (fields[5].split(","), fields[6:dash], fields[dash + 3].split(","))
    assert "noexec" in seen["/u"][0] and "unbindable" in seen["/u"][1]
    assert {"size=1024k", "mode=700", "huge=within_size"} <= set(seen["/t"][2])
    assert "/etc/hosts" not in seen


def test_unknown_flags_and_an_unmount_of_nothing_are_one_line(sandbox):
    from tests.integration.plugin_helpers import srun

    image = f"--container-image={sandbox.registry}/hpcctl/busybox:latest"
    bad = srun(sandbox, image, "--container-mounts=tmpfs:/t:uid=0+suid", "true", cwd="/tmp")
    assert bad.returncode != 0 and "unknown flag" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    nothing = srun(sandbox, image, "--container-mpi=none", "--container-mounts=umount:/bin", "true", cwd="/tmp")
    errors = [line for line in nothing.stderr.splitlines() if line.startswith("hpcctl: error:")]
    assert nothing.returncode != 0 and len(errors) == 1 and "cannot unmount /bin" in errors[0], nothing.stderr
