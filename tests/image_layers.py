"""Layer tarballs for image tests, including crafted malicious ones; shared by unit and integration tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass

TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
         "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}


class Entry(tarfile.TarInfo):
    __slots__ = ("data",)


def e(name: str, kind: str = "file", data: bytes = b"", mode: int | None = None, link: str = "",
      xattrs: dict | None = None) -> tarfile.TarInfo:
    """One tar entry; ``data`` rides along as ``info.data`` for regular files."""
    info = Entry(name)
    info.type = TYPES[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.linkname = link
    info.mtime = 1700000000
    if kind == "file":
        info.size = len(data)
    if kind in ("char", "block"):
        info.devmajor, info.devminor = 1, 3
    for key, value in (xattrs or {}).items():
        info.pax_headers[f"SCHILY.xattr.{key}"] = value
    info.data = data
    return info


def tar_bytes(entries: list[tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info in entries:
            tf.addfile(info, io.BytesIO(info.data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def gz_layer(entries: list[tarfile.TarInfo]) -> tuple[bytes, str, str]:
    """(gzip blob, blob digest, diff_id)."""
    raw = tar_bytes(entries)
    blob = gzip.compress(raw, mtime=0)
    return blob, "sha256:" + hashlib.sha256(blob).hexdigest(), "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Crafted:
    """Layers bottom-up; ``rejected`` is a substring of the UnsafeLayer message, or None when the image must convert
    with the attack neutralized (``absent`` paths missing, ``present`` paths there)."""

    layers: list
    rejected: str | None = None
    absent: tuple = ()
    present: tuple = ()


BASE = [e("etc", "dir"), e("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"), e("tmp", "dir", mode=0o1777)]

CRAFTED = {
    "dotdot-path": Crafted([BASE, [e("../../../../tmp/hpcctl-escape", data=b"pwned")]], rejected="climbs out"),
    "dotdot-in-middle": Crafted([BASE, [e("etc/../../hpcctl-escape", data=b"pwned")]], rejected="climbs out"),
    "absolute-path": Crafted([BASE, [e("/etc/absolute", data=b"fine")]], present=("etc/absolute",)),
    "symlink-then-write-through": Crafted(
        [BASE, [e("evil", "symlink", link="/tmp"), e("evil/hpcctl-escape", data=b"pwned")]],
        rejected="made a link"),
    "symlink-in-lower-write-in-upper": Crafted(
        [BASE + [e("lib", "symlink", link="../../../tmp")], [e("lib/hpcctl-escape", data=b"pwned")]],
        rejected="puts files inside it"),
    "symlink-outside-kept-as-data": Crafted(
        [BASE, [e("etc/shadow-link", "symlink", link="/etc/shadow"),
                e("etc/up-link", "symlink", link="../../../../../root")]],
        present=("etc/shadow-link", "etc/up-link")),
    "hardlink-dotdot": Crafted([BASE, [e("etc/h", "hardlink", link="../../etc/shadow")]], rejected="climbs out"),
    "hardlink-absolute-outside": Crafted([BASE, [e("etc/h", "hardlink", link="/etc/shadow")]],
                                         rejected="not a regular file of the image"),
    "hardlink-to-dir": Crafted([BASE, [e("etc/h", "hardlink", link="etc")]], rejected="not a regular file"),
    "hardlink-through-symlink": Crafted(
        [BASE, [e("s", "symlink", link="/etc"), e("h", "hardlink", link="s/shadow")]],
        rejected="not a regular file of the image"),
    "device-nodes": Crafted([BASE, [e("dev", "dir"), e("dev/mem", "char"), e("dev/sda", "block"),
                                    e("dev/fifo", "fifo")]],
                            absent=("dev/mem", "dev/sda"), present=("dev/fifo",)),
    "setuid-setgid": Crafted([BASE, [e("bin", "dir"), e("bin/su", data=b"x", mode=0o4755),
                                     e("bin/wall", data=b"y", mode=0o2755)]], present=("bin/su", "bin/wall")),
    "whiteout-climbing-out": Crafted([BASE, [e("../.wh.etc")]], rejected="climbs out"),
    "whiteout-of-dotdot-deletes-nothing": Crafted([BASE, [e("etc", "dir"), e("etc/.wh...")]],
                                                  present=("etc/passwd",), absent=("etc/.wh...",)),
    "whiteout-hides-a-lower-file": Crafted([BASE + [e("etc/shadow", data=b"x")], [e("etc", "dir"),
                                                                                  e("etc/.wh.shadow")]],
                                           present=("etc/passwd",), absent=("etc/shadow", "etc/.wh.shadow")),
    "opaque-directory": Crafted([BASE + [e("etc/shadow", data=b"x")],
                                 [e("etc", "dir"), e("etc/.wh..wh..opq"), e("etc/hosts", data=b"new")]],
                                present=("etc/hosts",), absent=("etc/shadow", "etc/passwd", "etc/.wh..wh..opq")),
    "opaque-root": Crafted([BASE, [e(".wh..wh..opq"), e("only", data=b"top")]], present=("only",),
                           absent=("etc/passwd", "tmp")),
    "file-capabilities": Crafted([BASE, [e("bin", "dir"), e("bin/ping", data=b"x", xattrs={
        "security.capability": "\x01\x00\x00\x02", "user.note": "kept"})]], present=("bin/ping",)),
}


def push_to_sandbox(registry: str, repo: str, tag: str, layers_bottom_up: list, workdir,
                    env: tuple[str, ...] = ("PATH=/bin",)) -> str:
    """Push an image made of ``layers_bottom_up`` (lists of entries) with the sandbox's pusher; returns its digest."""
    from pathlib import Path

    from hpcctl.sandbox.oci_push import Layer, Pusher, image_config
    layers = []
    for number, entries in enumerate(layers_bottom_up):
        blob, digest, diff_id = gz_layer(entries)
        path = Path(workdir) / f"{repo.replace('/', '_')}-{tag}-{number}.tar.gz"
        path.write_bytes(blob)
        layers.append(Layer(path, digest, diff_id, len(blob)))
    return Pusher(registry).push_image(repo, tag, layers, image_config(list(env), ["/bin/sh"]))
