"""The container document the plugin's helper and `hpcctl run` hand to the C side, built once for both."""

import pwd

from hpcctl.container import options
from hpcctl.container.access import Identity
from hpcctl.container.build import Image, StepFacts
from hpcctl.container.container import build_container
from hpcctl.site.config import load_site

NOBODY = pwd.getpwnam("nobody")


def _build(tmp_path, uid: int, gid: int, config: dict):
    site_file = tmp_path / "site.yaml"
    site_file.write_text(f"version: 1\ncluster: t\nplugin:\n  runtime_dir: {tmp_path}/run\n")
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    image = Image(path=str(rootfs), reference="img", config=config)
    step = StepFacts(who=Identity(uid, gid, ()), cwd="/data/run1", node="n1")
    opts = options.parse({"image": str(rootfs), "mpi": "none"}, "/")
    return build_container(load_site(site_file), image, opts, step, str(tmp_path / "state"))


def test_the_document_says_who_runs_where(tmp_path):
    container = _build(tmp_path, NOBODY.pw_uid, NOBODY.pw_gid, {"WorkingDir": "/app"})
    doc = container.to_dict()
    assert {k: v for k, v in doc.items() if k != "plan"} == {
        "uid": NOBODY.pw_uid, "gid": NOBODY.pw_gid, "groups": [], "cwd": "/data/run1", "fallback_dir": "/app"}
    assert doc["plan"]["image"] == str(tmp_path / "rootfs")
    assert doc["plan"]["staging"] == f"{tmp_path}/run/mnt"
    identity = [m for m in container.plan.mounts if m.target in ("/etc/passwd", "/etc/group")]
    assert [m.source.rsplit("/", 1)[-1] for m in identity] == ["passwd", "group"]
    assert identity[0].source.startswith(f"{tmp_path}/state/identity-{NOBODY.pw_uid}-")
    assert f"{NOBODY.pw_name}:x:{NOBODY.pw_uid}:" in open(identity[0].source).read()


def test_root_keeps_the_images_passwd_and_starts_in_slash_by_default(tmp_path):
    container = _build(tmp_path, 0, 0, {})
    assert container.fallback_dir == "/"
    assert not [m for m in container.plan.mounts if m.target == "/etc/passwd"]
