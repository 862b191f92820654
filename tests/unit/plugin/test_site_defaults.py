"""Site-level defaults (the site config's plugin: section) decide what a step gets when the user says nothing; the
user's options, from the command line or PYXIS_CONTAINER_*, override them."""

import pwd

import pytest

from hpcctl.container import options
from hpcctl.container.access import Identity
from hpcctl.container.build import Image, StepFacts, build_plan
from hpcctl.container.image_facts import ImageFacts
from hpcctl.site.config import load_site

ME = pwd.getpwuid(0)


def _site(tmp_path, mount_home: bool, entrypoint: bool, writable: bool):
    site_file = tmp_path / "site.yaml"
    site_file.write_text("version: 1\ncluster: t\nplugin:\n"
                         f"  mount_home: {str(mount_home).lower()}\n  entrypoint: {str(entrypoint).lower()}\n"
                         f"  writable: {str(writable).lower()}\n")
    return load_site(site_file)


def _plan(tmp_path, site, raw):
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    image = Image(path=str(tmp_path / "rootfs"), reference="img", config={"Entrypoint": ["/init"]})
    step = StepFacts(who=Identity(ME.pw_uid, ME.pw_gid, ()), cwd="/", node="n1")
    return build_plan(site, image, options.parse({"image": "img", "mpi": "none", **raw}, "/"), step,
                      ImageFacts())


def _home_mounted(plan) -> bool:
    return any(m.target == ME.pw_dir and m.why.startswith("home directory") for m in plan.mounts)


@pytest.mark.parametrize("on", [True, False])
def test_site_defaults_apply_when_the_user_says_nothing(tmp_path, on):
    plan = _plan(tmp_path, _site(tmp_path, mount_home=on, entrypoint=on, writable=on), {})
    assert (_home_mounted(plan), plan.entrypoint == ["/init"], plan.writable) == (on, on, on)


@pytest.mark.parametrize("on", [True, False])
def test_the_users_options_override_the_site(tmp_path, on):
    site = _site(tmp_path, mount_home=not on, entrypoint=not on, writable=not on)
    flag = "1" if on else "0"
    plan = _plan(tmp_path, site, {"mount_home": flag, "entrypoint": flag, "writable": flag})
    assert (_home_mounted(plan), plan.entrypoint == ["/init"], plan.writable) == (on, on, on)
