"""Sources other than registries: dockerd:// images (the daemon is faked: none runs here) and .sif files."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile

import pytest

from hpcctl.errors import HpcctlError
from hpcctl.image import api, dockerd
from hpcctl.image.errors import NotFound
from image_layers import e, tar_bytes


class FakeImage:
    id = "sha256:" + "d" * 64

    def __init__(self, layers):
        self.layers = layers

    def save(self, named=False):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            def add(name, data):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            names = []
            for i, entries in enumerate(self.layers):
                names.append(f"layer{i}/layer.tar")
                add(names[-1], tar_bytes(entries))
            add("config.json", json.dumps({"config": {"Env": ["A=1"], "Cmd": ["/bin/true"]}}).encode())
            add("manifest.json", json.dumps([{"Config": "config.json", "Layers": names}]).encode())
        data = buf.getvalue()
        return [data[i:i + 4096] for i in range(0, len(data), 4096)]


class FakeClient:
    def __init__(self, images):
        self.images = self
        self._images = images

    def get(self, name):
        from docker.errors import ImageNotFound
        if name not in self._images:
            raise ImageNotFound(name)
        return self._images[name]


def test_dockerd_image_is_saved_flattened_and_cached(site, monkeypatch):
    image = FakeImage([[e("etc", "dir"), e("etc/a", data=b"a"), e("etc/gone", data=b"x")],
                       [e("etc", "dir"), e("etc/.wh.gone")]])
    monkeypatch.setattr(dockerd, "client", lambda: FakeClient({"app:dev": image}))
    cached = api.ensure("dockerd://app:dev", site)
    assert cached.digest == image.id and cached.config.env == ("A=1",)
    listing = subprocess.run(["unsquashfs", "-lln", cached.path], capture_output=True, text=True).stdout
    assert "squashfs-root/etc/a" in listing and "etc/gone" not in listing
    assert api.resolve("dockerd://app:dev", site).pinned == f"dockerd://{image.id}"
    with pytest.raises(NotFound, match="not in the local Docker daemon"):
        api.ensure("dockerd://other", site)


def test_sif_without_apptainer_is_a_clear_error(site, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    sif = tmp_path / "x.sif"
    sif.write_bytes(b"SIF_MAGIC")
    with pytest.raises(HpcctlError, match="need apptainer or singularity"):
        api.ensure(str(sif), site)
