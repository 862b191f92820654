"""`hpcctl image inspect` on the sandbox: a cached registry image, a squashfs file as hpcuser, a private image, and
the one-line answers when there is nothing to show. (.sif files: tests/integration/test_sif.py.)"""

from __future__ import annotations

import json
import os
import pwd
import subprocess

import pytest
from image_site import ImageSite

from hpcctl.image import sif

pytestmark = pytest.mark.integration


@pytest.fixture
def image_site(sandbox):
    return ImageSite()


def test_a_cached_image_by_tag_and_by_digest(sandbox, image_site):
    ref = f"{sandbox.registry}/hpcctl/busybox:latest"
    pulled = image_site.pull(ref)
    by_tag = json.loads(image_site.run("inspect", "--json", ref).stdout)
    assert (by_tag["format"], by_tag["digest"], by_tag["path"], by_tag["size"]) == (
        "oci", pulled["digest"], pulled["path"], pulled["size"])
    assert by_tag["architecture"] == sif.node_arch()
    assert "HPCCTL_TEST_IMAGE=busybox" in by_tag["env"] and by_tag["cmd"] == ["/bin/sh"]
    by_digest = json.loads(image_site.run("inspect", "--json", pulled["digest"][:19]).stdout)
    assert by_digest == by_tag
    text = image_site.run("inspect", ref).stdout
    assert "format:       oci\n" in text and f"digest:       {pulled['digest']}\n" in text


def test_a_cached_images_labels_are_shown(sandbox, image_site):
    from hpcctl.sandbox.oci_push import Pusher, build_layer, image_config
    from hpcctl.sandbox.test_images import LAYER_DIR, busybox_tree

    layer = build_layer(busybox_tree(), LAYER_DIR / "busybox-bin.tar.gz", ["./bin"])
    config = image_config(["PATH=/bin"], ["/bin/sh"])
    config["config"]["Labels"] = {"org.opencontainers.image.title": "labelled", "maintainer": "hpcctl"}
    Pusher(sandbox.registry).push_image("hpcctl-test/labelled", "v1", [layer], config)
    ref = f"{sandbox.registry}/hpcctl-test/labelled:v1"
    image_site.pull(ref)
    found = json.loads(image_site.run("inspect", "--json", ref).stdout)
    assert found["labels"] == {"org.opencontainers.image.title": "labelled", "maintainer": "hpcctl"}
    assert image_site.run("inspect", ref).stdout.endswith(
        "labels:       maintainer: hpcctl\n              org.opencontainers.image.title: labelled\n")


def test_an_image_not_in_the_cache_is_one_line_and_nothing_is_pulled(sandbox, image_site):
    ref = f"{sandbox.registry}/hpcctl/busybox:latest"
    result = image_site.run("inspect", ref, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"hpcctl: error: {ref} is not in this node's image cache (inspect never pulls) (pull "
                             f"it first: hpcctl image pull {ref}; or pass a .sif/squashfs file as ./FILE)\n")
    assert image_site.ls() == []


def test_a_squashfs_file_as_the_user(sandbox, image_site):
    pulled = image_site.pull(f"{sandbox.registry}/hpcctl/busybox:latest")
    work = sandbox.workdir()
    copy = work / "busybox.sqsh"
    copy.write_bytes(open(pulled["path"], "rb").read())
    os.chown(copy, pwd.getpwnam(sandbox.user).pw_uid, -1)
    found = json.loads(sandbox.run(image_site.cmd("inspect", "--json", str(copy)), user=sandbox.user).stdout)
    assert (found["format"], found["architecture"], found["size"]) == ("squashfs", sif.node_arch(), pulled["size"])
    assert found["digest"].startswith("sha256:") and found["sif"] == {} and found["labels"] == {}


def test_a_private_cached_image_is_not_shown_to_users(sandbox):
    work = sandbox.workdir()
    uid = pwd.getpwnam(sandbox.user).pw_uid
    credentials = work / "credentials"
    credentials.write_text(f"machine {sandbox.auth_registry} login {sandbox.auth_user} "
                           f"password {sandbox.auth_password}\n")
    os.chown(credentials, uid, uid)
    credentials.chmod(0o600)
    site = ImageSite(netrc=str(credentials))
    ref = f"{sandbox.auth_registry}/private/busybox:latest"
    site.pull(ref, "--uid", str(uid))
    refused = sandbox.run(site.cmd("inspect", ref), user=sandbox.user, check=False)  # its files are root's alone
    assert refused.returncode == 1 and refused.stderr.startswith(f"hpcctl: error: {ref} is not in this node's "
                                                                 "image cache")
    assert json.loads(site.run("inspect", "--json", ref).stdout)["format"] == "oci"  # root may


def test_help_says_what_it_reads_and_that_signatures_are_not_verified(image_site):
    text = subprocess.run(image_site.cmd("inspect", "--help"), capture_output=True, text=True, check=True).stdout
    for words in ("inspect never pulls", "never verified", "runscript", "labels", "--json"):
        assert words in text, words
