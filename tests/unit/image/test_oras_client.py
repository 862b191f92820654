"""oras:// push and pull through the registry client, against the in-process registry (issue 15): the token asks
for push rights, a blob the registry has is not sent again, a retried upload sends its body again from the start,
and a pulled .sif is published with its partition's offset, or refused."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fake_registry import OCI_MANIFEST, digest_of

from hpcctl.image import api, oras
from hpcctl.image import sif as sif_module
from hpcctl.image.credentials import Credentials
from hpcctl.image.errors import RegistryError
from hpcctl.image.progress import Progress
from hpcctl.image.reference import parse
from hpcctl.image.registry import Registry, RegistryConfigView
from hpcctl.sandbox.sif_writer import partition, write

SQUASHFS = b"hsqs" + bytes(4092)  # a superblock magic is all the SIF reader checks of the partition


def sif_file(tmp_path: Path) -> Path:
    return write(tmp_path / "tool.sif", [partition(SQUASHFS)])


def pusher(fake_registry, repo: str) -> Registry:
    return Registry(parse(f"oras://{fake_registry.host}/{repo}:v1"), RegistryConfigView(insecure=(fake_registry.host,)),
                    Credentials("alice", "secret", "test"), actions="pull,push")


def test_push_asks_for_push_rights_and_lays_the_artifact_out_as_apptainer(fake_registry, tmp_path):
    fake_registry.auth = "bearer"
    sif = sif_file(tmp_path)
    digest = oras.push(sif, pusher(fake_registry, "me/tool"), "v1", Progress(False))
    tokens = [path for _, path in fake_registry.log if path.startswith("/token")]
    assert tokens and all("scope=repository%3Ame%2Ftool%3Apull%2Cpush" in path for path in tokens)
    media_type, body = fake_registry.manifests[("me/tool", "v1")]
    assert media_type == OCI_MANIFEST and digest_of(body) == digest
    manifest = json.loads(body)
    assert manifest["config"] == {"mediaType": oras.SIF_CONFIG, "digest": digest_of(b"{}"), "size": 2}
    assert manifest["layers"] == [{"mediaType": oras.SIF_LAYER, "digest": digest_of(sif.read_bytes()),
                                   "size": sif.stat().st_size, "annotations": {oras.TITLE: "tool.sif"}}]
    assert fake_registry.blobs[manifest["layers"][0]["digest"]] == sif.read_bytes()


def test_a_blob_the_registry_has_is_not_sent_again_and_a_retried_upload_resends_its_body(fake_registry, tmp_path):
    registry = pusher(fake_registry, "me/tool")
    fake_registry.add_blob(b"{}")
    registry.push_blob(digest_of(b"{}"), 2, io.BytesIO(b"{}"))
    assert [method for method, _ in fake_registry.log] == ["HEAD"]
    data = b"x" * 5000
    fake_registry.fail_puts = [503]  # the upload's PUT fails once: its body goes again, whole
    registry.push_blob(digest_of(data), len(data), io.BytesIO(data))
    assert fake_registry.blobs[digest_of(data)] == data
    assert [method for method, _ in fake_registry.log[1:]] == ["HEAD", "POST", "PUT", "PUT"]


def test_pull_publishes_the_sif_with_its_partition_offset(fake_registry, site, tmp_path):
    sif = sif_file(tmp_path)
    digest = oras.push(sif, pusher(fake_registry, "me/tool"), "v1", Progress(False))
    image = api.ensure(f"oras://{fake_registry.host}/me/tool:v1", site)
    assert image.digest == digest and image.size == len(SQUASHFS) and image.offset > 0
    assert Path(image.path).read_bytes() == sif.read_bytes()
    assert image.config.cmd == ("/.singularity.d/runscript",)


def test_a_container_image_is_refused_as_oras_and_a_sif_artifact_as_a_container_image(fake_registry, site, tmp_path):
    with pytest.raises(RegistryError, match=r"is not a SIF pushed as an ORAS artifact: its manifest has "):
        api.ensure(f"oras://{fake_registry.host}/test/small:v1", site)
    oras.push(sif_file(tmp_path), pusher(fake_registry, "me/tool"), "v1", Progress(False))
    with pytest.raises(RegistryError, match=r"is a \.sif stored as an ORAS artifact, not a container image"):
        api.ensure(f"{fake_registry.host}/me/tool:v1", site)
    assert not list((Path(site.cache.root) / "images").glob("*.json"))


def test_a_sif_for_another_architecture_is_pushed_but_not_run_here(fake_registry, site, tmp_path):
    other = "arm64" if sif_module.node_arch() != "arm64" else "amd64"
    sif = write(tmp_path / "other.sif", [partition(SQUASHFS, arch=other)], arch=other)
    oras.push(sif, pusher(fake_registry, "me/other"), "v1", Progress(False))
    ref = f"oras://{fake_registry.host}/me/other:v1"
    with pytest.raises(sif_module.BadSif, match=rf"^{ref}: the .sif is built for {other}, this node is "):
        api.ensure(ref, site)
    assert not list((Path(site.cache.root) / "images").glob("*.json"))
    assert not list((Path(site.cache.root) / "tmp").iterdir())
