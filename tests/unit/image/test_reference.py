"""Image references: every form users type, and one-line errors for malformed ones."""

import pytest

from hpcctl.image.errors import BadReference
from hpcctl.image.reference import DaemonImage, ImageRef, LocalFile, parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, registry, repository, tag, digest, user", [
    ("ubuntu", "docker.io", "library/ubuntu", "latest", None, None),
    ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None, None),
    ("docker://ubuntu", "docker.io", "library/ubuntu", "latest", None, None),
    ("index.docker.io/library/ubuntu", "docker.io", "library/ubuntu", "latest", None, None),
    ("nvcr.io/nvidia/pytorch:23.12", "nvcr.io", "nvidia/pytorch", "23.12", None, None),
    ("nvcr.io#nvidia/pytorch:23.12", "nvcr.io", "nvidia/pytorch", "23.12", None, None),
    ("docker://alice@nvcr.io#nvidia/pytorch:23.12", "nvcr.io", "nvidia/pytorch", "23.12", None, "alice"),
    ("$oauthtoken@nvcr.io#nvidia/pytorch", "nvcr.io", "nvidia/pytorch", "latest", None, "$oauthtoken"),
    ("127.0.0.1:5000/hpcctl/busybox", "127.0.0.1:5000", "hpcctl/busybox", "latest", None, None),
    ("localhost/x/y:1", "localhost", "x/y", "1", None, None),
    (f"ubuntu@{DIGEST}", "docker.io", "library/ubuntu", None, DIGEST, None),
    (f"reg.example.com:443/a/b:v1@{DIGEST}", "reg.example.com:443", "a/b", "v1", DIGEST, None),
    (f"bob@ghcr.io#org/app:v2@{DIGEST}", "ghcr.io", "org/app", "v2", DIGEST, "bob"),
])
def test_registry_forms(text, registry, repository, tag, digest, user):
    assert parse(text) == ImageRef(registry, repository, tag, digest, user)


def test_short_names_use_the_sites_default_registry():
    assert parse("tools/app", default_registry="registry.site:5000").registry == "registry.site:5000"


def test_canonical_and_pinned():
    ref = parse("ubuntu:22.04")
    assert ref.canonical == "docker.io/library/ubuntu:22.04"
    assert str(ref.pinned(DIGEST)) == f"docker.io/library/ubuntu:22.04@{DIGEST}"
    assert parse(str(ref.pinned(DIGEST))).digest == DIGEST


@pytest.mark.parametrize("text", ["/srv/img.sqsh", "./img.sqsh", "../x.sqsh", "./a.sif"])
def test_local_files(text):
    assert parse(text) == LocalFile(text)


def test_daemon_images():
    assert parse("dockerd://myimage:dev") == DaemonImage("myimage:dev")


@pytest.mark.parametrize("text, says", [
    ("", "empty"),
    ("Ubuntu", "lowercase"),
    ("ubuntu:", "tag ''"),
    ("ubuntu:-x", "tag '-x'"),
    ("ubuntu@sha256:1234", "64 lowercase hex"),
    ("a b", "whitespace"),
    ("http://reg/x", "unknown scheme"),
    ("reg.io#", "no repository"),
    ("bad_host!#x", "not a host"),
    ("a//b", "repository part ''"),
    ("dockerd://", "no image name"),
])
def test_malformed_references_get_one_line_errors(text, says):
    with pytest.raises(BadReference) as info:
        parse(text)
    message = str(info.value)
    assert says in message and "\n" not in message and "IMAGE[:TAG]" in message
