"""`hpcctl image` against the sandbox registries: public and password-protected pulls, listing, removal."""

from __future__ import annotations

import os
import pwd
import uuid
from pathlib import Path

import pytest
from image_site import ImageSite, listing

pytestmark = pytest.mark.integration


@pytest.fixture
def image_site(sandbox):
    return ImageSite()


def test_pull_public_busybox_makes_a_root_owned_read_only_squashfs(sandbox, image_site):
    ref = f"{sandbox.registry}/hpcctl/busybox:latest"
    pulled = image_site.pull(ref)
    assert pulled["reference"] == ref and pulled["digest"].startswith("sha256:")
    assert "squashfs-root/bin/busybox" in listing(pulled["path"])
    st = os.stat(pulled["path"])
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o644)
    assert (os.stat(image_site.cache).st_mode & 0o777) == 0o755
    assert "HPCCTL_TEST_IMAGE=busybox" in pulled["config"]["Env"]
    (row,) = image_site.ls()
    assert (row["reference"], row["digest"], row["size"]) == (ref, pulled["digest"], pulled["size"])
    assert image_site.run("pull", ref).stdout.startswith(f"{ref}: {pulled['path']}")


def test_pull_debian_applies_the_whiteout_of_its_top_layer(sandbox, image_site):
    pulled = image_site.pull(f"{sandbox.registry}/hpcctl/debian:bookworm")
    files = listing(pulled["path"])
    assert "squashfs-root/etc/hpcctl-test-image" in files and "squashfs-root/etc/motd\n" not in files
    assert "squashfs-root/usr/bin/bash" in files


def test_resolve_rm_and_gc_from_the_command_line(sandbox, image_site):
    ref = f"{sandbox.registry}/hpcctl/busybox:latest"
    pinned = image_site.run("resolve", ref).stdout.strip()
    assert pinned.startswith(ref + "@sha256:")
    pulled = image_site.pull(pinned)
    removed = image_site.run("rm", "--json", pulled["digest"][:19]).stdout
    assert pulled["digest"] in removed and image_site.ls() == []
    image_site.pull(ref)
    out = image_site.run("gc", "--target", "0").stdout
    assert f"removed {ref}" in out and image_site.ls() == []


def test_bad_reference_is_one_line_and_exits_non_zero(sandbox, image_site):
    result = image_site.run("pull", "Bad:Ref:", check=False)
    assert result.returncode != 0
    assert result.stderr.startswith("hpcctl: error: bad image reference 'Bad:Ref:'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_user_without_write_access_pulls_into_their_own_cache(sandbox, image_site):
    ref = f"{sandbox.registry}/hpcctl/busybox:latest"
    home = pwd.getpwnam(sandbox.user).pw_dir
    cache_home = sandbox.workdir()
    result = sandbox.run(image_site.cmd("pull", "--json", ref), user=sandbox.user,
                         env={"XDG_CACHE_HOME": str(cache_home)})
    assert str(cache_home) in result.stdout and home in result.stdout
    assert not image_site.cache.exists() or image_site.ls() == []


class TestPrivateRegistry:
    """127.0.0.1:5001 wants basic auth; credentials come from the job user's own netrc file."""

    @pytest.fixture
    def creds(self, sandbox):
        workdir = sandbox.workdir()
        path = workdir / f"credentials-{uuid.uuid4().hex[:8]}"
        site = ImageSite(netrc=str(path).replace(pwd.getpwnam(sandbox.user).pw_dir, "~", 1))
        uid = pwd.getpwnam(sandbox.user).pw_uid

        def write(password: str):
            path.write_text(f"machine {sandbox.auth_registry} login {sandbox.auth_user} password {password}\n")
            os.chown(path, uid, uid)
            path.chmod(0o600)
        return site, write, uid

    def test_the_users_credentials_pull_the_image(self, sandbox, creds):
        site, write, uid = creds
        write(sandbox.auth_password)
        pulled = site.pull(f"{sandbox.auth_registry}/private/busybox:latest", "--uid", str(uid))
        assert "squashfs-root/bin/busybox" in listing(pulled["path"])
        assert os.stat(pulled["path"]).st_mode & 0o777 == 0o600  # jobs get it through the plugin, users never
        denied = sandbox.run(["cat", pulled["path"]], user=sandbox.user, check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr

    def test_the_same_image_public_elsewhere_is_not_locked_by_its_private_copy(self, sandbox, creds):
        """Regression: the sandbox's private busybox is the public one, digest for digest. Cached from the private
        registry first, it refused everyone who asked for the public one without credentials for the private."""
        site, write, uid = creds
        write(sandbox.auth_password)
        private = site.pull(f"{sandbox.auth_registry}/private/busybox:latest", "--uid", str(uid))
        write("wrong")
        public = site.pull(f"{sandbox.registry}/hpcctl/busybox:latest", "--uid", str(uid))
        assert public["digest"] == private["digest"]
        refused = site.run("pull", "--uid", str(uid), f"{sandbox.auth_registry}/private/busybox:latest", check=False)
        assert refused.returncode != 0 and "refused the credentials" in refused.stderr, refused.stderr

    def test_a_job_gets_the_private_image_with_its_users_credentials_only(self, sandbox, creds):
        """Through the plugin and the node cache, with the credentials file the sandbox's site config names."""
        home = Path(pwd.getpwnam(sandbox.user).pw_dir)
        srun = ["srun", "-w", "n1", "--container-mpi=none", "--container-workdir=/",
                f"--container-image={sandbox.auth_registry}/private/busybox:latest", "cat", "/etc/os-release"]
        refused = sandbox.run(srun, user=sandbox.user, check=False, timeout=120, cwd=sandbox.workdir())
        assert refused.returncode != 0
        assert f"srun: error: registry {sandbox.auth_registry} needs credentials for private/busybox" in \
            refused.stderr
        netrc = home / ".config/enroot/.credentials"
        sandbox.run(["mkdir", "-p", str(netrc.parent)], user=sandbox.user)
        sandbox.run(["sh", "-c", f"umask 077; echo 'machine {sandbox.auth_registry} login {sandbox.auth_user} "
                                 f"password {sandbox.auth_password}' > {netrc}"], user=sandbox.user)
        try:
            ran = sandbox.run(srun, user=sandbox.user, timeout=120, cwd=sandbox.workdir())
            assert "hpcctl busybox test image" in ran.stdout
        finally:
            netrc.unlink()

    def test_a_wrong_password_is_a_clear_error_and_gets_no_cached_copy(self, sandbox, creds):
        site, write, uid = creds
        ref = f"{sandbox.auth_registry}/private/busybox:latest"
        write(sandbox.auth_password)
        pinned = site.run("resolve", "--uid", str(uid), ref).stdout.strip()
        site.pull(pinned, "--uid", str(uid))  # now cached on the node
        write("not-the-password")
        for wanted in (ref, pinned):
            result = site.run("pull", "--uid", str(uid), wanted, check=False)
            assert result.returncode != 0
            assert (f"hpcctl: error: registry {sandbox.auth_registry} refused the credentials of "
                    f"'{sandbox.auth_user}'") in result.stderr
            assert result.stdout == ""

    def test_another_user_does_not_get_the_cached_copy_without_their_own_credentials(self, sandbox, creds):
        site, write, uid = creds
        ref = f"{sandbox.auth_registry}/private/busybox:latest"
        write(sandbox.auth_password)
        pinned = site.pull(ref, "--uid", str(uid))["reference"]
        nobody = str(pwd.getpwnam("nobody").pw_uid)  # has no registry credentials
        for wanted in (ref, f"{ref}@{site.ls()[0]['digest']}"):
            result = site.run("pull", "--uid", nobody, wanted, check=False)
            assert result.returncode != 0 and result.stdout == ""
            assert result.stderr == (f"hpcctl: error: registry {sandbox.auth_registry} needs credentials for "
                                     "private/busybox and none were found (add them to ~/.config/enroot/.credentials "
                                     "(machine HOST login USER password PASS) or log in with docker login)\n")
        assert pinned == ref and [row["reference"] for row in site.ls()] == [ref]

    def test_no_credentials_at_all(self, sandbox, creds):
        site, _, uid = creds
        result = site.run("pull", "--uid", str(uid), f"{sandbox.auth_registry}/private/busybox:latest",
                          check=False)
        assert result.returncode != 0 and "needs credentials for private/busybox" in result.stderr

    def test_credentials_are_read_as_the_user_not_as_root(self, sandbox, creds):
        site, _, uid = creds
        secret = site.dir / "root-only-credentials"
        secret.write_text(f"machine {sandbox.auth_registry} login {sandbox.auth_user} password "
                          f"{sandbox.auth_password}\n")
        secret.chmod(0o600)
        netrc_link = sandbox.workdir() / "link"
        netrc_link.symlink_to(secret)
        os.lchown(netrc_link, uid, uid)
        evil = ImageSite(netrc=str(netrc_link))
        result = evil.run("pull", "--uid", str(uid), f"{sandbox.auth_registry}/private/busybox:latest",
                          check=False)
        assert result.returncode != 0 and "Permission denied" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_users_cannot_remove_images_from_the_node_cache(sandbox, image_site):
    pulled = image_site.pull(f"{sandbox.registry}/hpcctl/busybox:latest")
    result = sandbox.run(image_site.cmd("rm", pulled["digest"]), user=sandbox.user, check=False,
                         env={"XDG_CACHE_HOME": str(sandbox.workdir())})
    assert result.returncode != 0
    assert result.stderr.startswith("hpcctl: error: only root can remove images from the node cache")
    gc = sandbox.run(image_site.cmd("gc", "--target", "0"), user=sandbox.user,
                     env={"XDG_CACHE_HOME": str(sandbox.workdir())})
    assert gc.returncode == 0 and [row["digest"] for row in image_site.ls()] == [pulled["digest"]]
