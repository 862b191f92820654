"""The base of every step's plan: a private /dev, /proc and /sys last, site mounts (devices among them)."""

from hpcctl.container import options
from hpcctl.container.access import Identity
from hpcctl.container.build import Image, StepFacts, build_plan
from hpcctl.container.image_facts import ImageFacts
from hpcctl.site.config import load_site


def _plan(tmp_path):
    site_file = tmp_path / "site.yaml"
    site_file.write_text("version: 1\ncluster: t\nmounts:\n  - source: /dev/null\n    target: /dev/site-null\n"
                         "  - source: /etc/hostname\n    flags: [ro]\n")
    (tmp_path / "rootfs").mkdir()
    image = Image(path=str(tmp_path / "rootfs"), reference="img")
    step = StepFacts(who=Identity(0, 0, ()), cwd="/", node="n1")
    return build_plan(load_site(site_file), image, options.parse({"image": "img", "mpi": "none"}, "/"), step,
                      ImageFacts())


def test_dev_is_private_and_proc_and_sys_come_last(tmp_path):
    mounts = _plan(tmp_path).mounts
    assert (mounts[0].kind, mounts[0].target) == ("tmpfs", "/dev")
    assert [(m.target, m.late) for m in mounts[-2:]] == [("/proc", True), ("/sys", True)]
    assert not any(m.source == "/dev" for m in mounts)


def test_a_site_mount_of_a_device_stays_a_device(tmp_path):
    by_target = {m.target: m for m in _plan(tmp_path).mounts}
    assert by_target["/dev/site-null"].kind == "dev"
    assert by_target["/etc/hostname"].kind == "bind"
