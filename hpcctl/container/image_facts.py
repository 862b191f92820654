"""What the plan needs to know from inside an image: its passwd and group files (to add the job's user), the
libraries it has under the names host MPI replaces, its C library's version, and its linker directories. Read once
per step, as the job's user, in a confined child (hpcctl.container.image_view)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hpcctl.container import image_view
from hpcctl.container.access import Identity
from hpcctl.container.inject import glibc
from hpcctl.container.inject.abi import LibVersion
from hpcctl.container.inject.container_libs import ContainerLib, ImageLibraries, conf_dirs, resolve_in_root
from hpcctl.host.files import read_regular

ACCOUNTS_BYTES = 1 << 20  # an image's passwd or group file beyond this is ignored


@dataclass(frozen=True)
class ImageFacts:
    passwd: str = ""
    group: str = ""
    libraries: Mapping[str, tuple[ContainerLib, ...]] = field(default_factory=dict)
    glibc: tuple[str, tuple[int, ...]] | None = None  # (libc path, newest GLIBC_x.y it defines)
    ld_dirs: tuple[str, ...] = ()  # directories of the image's ld.so.conf, for the container's linker cache

    def named(self, linker: str) -> list[ContainerLib]:
        return list(self.libraries.get(linker, ()))

    @classmethod
    def from_dict(cls, raw: dict) -> "ImageFacts":
        libraries = {linker: tuple(ContainerLib(lib["path"], lib["real"],
                                                LibVersion(lib["real"], lib["linker"], tuple(lib["version"])))
                                   for lib in libs)
                     for linker, libs in raw["libraries"].items()}
        found = raw["glibc"]
        return cls(raw["passwd"], raw["group"], libraries, (found[0], tuple(found[1])) if found else None,
                   tuple(raw["ld_dirs"]))


def _accounts(rootfs: str, path: str) -> str:
    data = read_regular(f"{rootfs}/{resolve_in_root(rootfs, path).lstrip('/')}", ACCOUNTS_BYTES + 1)
    return "" if len(data) > ACCOUNTS_BYTES else data.decode(errors="replace")


def collect(rootfs: str, linkers: Iterable[str], ldconfig: str) -> dict:
    """The facts of the tree at ``rootfs`` as a JSON-able dict; ``linkers``: library names to look up."""
    linkers = list(linkers)
    libraries: dict[str, list[dict]] = {}
    found = None
    if linkers:
        libs = ImageLibraries(rootfs, ldconfig)
        for linker in linkers:
            libraries[linker] = [{"path": lib.path, "real": lib.real, "linker": lib.version.linker,
                                  "version": list(lib.version.version)} for lib in libs.named(linker)]
        found = glibc.image_release(libs)
    return {"passwd": _accounts(rootfs, "/etc/passwd"), "group": _accounts(rootfs, "/etc/group"),
            "libraries": libraries, "glibc": [found[0], list(found[1])] if found else None,
            "ld_dirs": conf_dirs(rootfs)}


def read(image: str, who: Identity, linkers: Iterable[str], ldconfig: str, scratch: str,
         user_file: bool = False, offset: int = 0, size: int = 0,
         open_as: tuple[int, int] | None = None) -> ImageFacts:
    """The facts of ``image`` (a squashfs file or a root tree), read as ``who``; ``user_file``: a file the user
    named, opened with their rights (a cached image is opened by root)."""
    linkers = list(linkers)
    raw = image_view.read(image, who, lambda: collect(".", linkers, ldconfig), f"the image {image}", scratch,
                          user_file=user_file, offset=offset, size=size, open_as=open_as)
    return ImageFacts.from_dict(raw)
