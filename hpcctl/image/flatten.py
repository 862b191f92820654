"""Merge untrusted layer tarballs into one clean tar stream, never touching the filesystem.

Layers are read top (newest) first. An entry is written only the first time its path is seen, so the newest version
wins; whiteouts (``.wh.NAME``) and opaque markers (``.wh..wh..opq``) hide what lower layers hold. The output goes
straight to tar2sqfs, so no directory tree is ever extracted and no process follows a path an image controls.

Neutralized (the image still converts): absolute names (made relative), device nodes (dropped), setuid/setgid bits
(cleared), xattrs other than ``user.*`` (dropped: no file capabilities, no security labels).
Rejected (UnsafeLayer): ``..`` in a name or hardlink target, entries placed inside a path that the same or an upper
layer made a symlink or file, hardlinks to something that is not a regular file of the image, and any other entry
that would need a tar extractor to follow a link.
Symlink targets are stored as they are: they are data inside the squashfs and only ever resolve inside the
container's root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO

from hpcctl.image import tarstream as ts
from hpcctl.image.errors import UnsafeLayer

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
KEEP_XATTR_PREFIX = "user."

DIR, REG, LINK, SYMLINK, OTHER, DROPPED = "d", "r", "h", "s", "o", "x"
_KIND = {ts.DIR: DIR, ts.REG: REG, ts.AREG: REG, ts.CONT: REG, ts.LNK: LINK, ts.SYM: SYMLINK, ts.FIFO: OTHER,
         ts.CHR: DROPPED, ts.BLK: DROPPED}
_OUT_TYPE = {DIR: ts.DIR, REG: ts.REG, LINK: ts.LNK, SYMLINK: ts.SYM, OTHER: ts.FIFO}


@dataclass
class FlattenReport:
    entries: int = 0
    hidden: int = 0
    absolute_names: int = 0
    devices_dropped: int = 0
    setid_cleared: int = 0
    xattrs_dropped: int = 0
    other_dropped: int = 0

    def notes(self) -> list[str]:
        out = []
        for label, count in (("absolute names made relative", self.absolute_names),
                             ("device nodes dropped", self.devices_dropped),
                             ("setuid/setgid bits cleared", self.setid_cleared),
                             ("security xattrs dropped", self.xattrs_dropped),
                             ("entries of unknown type dropped", self.other_dropped)):
            if count:
                out.append(f"{count} {label}")
        return out


def clean_path(name: str, layer: str, report: FlattenReport | None = None, what: str = "entry") -> str:
    """'./usr//bin/' -> 'usr/bin'; '' for the root; UnsafeLayer for '..' components."""
    if name.startswith("/") and report is not None:
        report.absolute_names += 1
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"layer {layer}: {what} '{name}' climbs out of the image with '..'",
                          "the image is refused; rebuild it without such entries")
    return "/".join(parts)


def _parents(path: str):
    """'a/b/c' -> 'a', 'a/b' (strict ancestors, outermost first)."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


@dataclass
class Flattener:
    """Feed layers newest first with add_layer(); finish() checks leftovers and ends the tar stream."""

    out: BinaryIO
    report: FlattenReport = field(default_factory=FlattenReport)
    _writer: ts.TarWriter | None = None
    _claimed: dict = field(default_factory=dict)  # path -> (layer number, kind) of the surviving entry
    _implied: dict = field(default_factory=dict)  # directory path needed by an entry -> layer number
    _whiteouts: set = field(default_factory=set)  # paths deleted by an upper layer
    _opaque: set = field(default_factory=set)  # directories whose lower contents an upper layer hid
    _pending_links: dict = field(default_factory=dict)  # hardlink target -> (link path, layer name)
    _layer_no: int = 0

    def add_layer(self, stream: BinaryIO, name: str) -> None:
        """Read one layer tar (uncompressed stream) and write its surviving entries."""
        if self._writer is None:
            self._writer = ts.TarWriter(self.out)
        number = self._layer_no
        self._layer_no += 1
        whiteouts, opaque = set(), set()
        try:
            reader = ts.TarReader(stream)
            for member in reader:
                self._entry(reader, member, number, name, whiteouts, opaque)
        except ts.TarFormatError as exc:
            raise UnsafeLayer(f"layer {name} is not a valid tar archive: {exc}",
                              "the image is refused; rebuild or re-push it") from None
        self._whiteouts |= whiteouts
        self._opaque |= opaque

    def _hidden(self, path: str, number: int) -> bool:
        """Whether upper layers (numbers below ``number``) deleted, replaced or shadowed ``path``."""
        if path in self._claimed or path in self._whiteouts or "" in self._opaque:
            return True
        for parent in _parents(path):
            if parent in self._opaque or parent in self._whiteouts:
                return True
            claimed = self._claimed.get(parent)
            if claimed and claimed[1] != DIR and claimed[0] < number:
                return True
        return False

    def _entry(self, reader: ts.TarReader, member: ts.Member, number: int, layer: str, whiteouts: set,
               opaque: set):
        path = clean_path(member.name, layer, self.report)
        if not path:
            return
        base = path.rsplit("/", 1)[-1]
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if base.startswith(WHITEOUT):
            if base == OPAQUE:
                opaque.add(parent)
            elif not base.startswith(WHITEOUT + WHITEOUT):
                target = base[len(WHITEOUT):]
                whiteouts.add(f"{parent}/{target}" if parent else target)
            return
        self.report.entries += 1
        if self._hidden(path, number):
            self.report.hidden += 1
            return
        for ancestor in _parents(path):
            claimed = self._claimed.get(ancestor)
            if claimed and claimed[1] != DIR:  # same layer: upper layers' links were handled by _hidden
                raise UnsafeLayer(f"layer {layer}: entry '{member.name}' lies inside '{ancestor}', which this layer "
                                  "made a link or file (a tar extractor would write through it)",
                                  "the image is refused; rebuild it without such entries")
        kind = _KIND.get(member.type, None)
        if kind is None:
            self.report.other_dropped += 1
            self._claimed[path] = (number, DROPPED)
            return
        if kind != DIR and path in self._implied:
            raise UnsafeLayer(f"layer {layer}: '{member.name}' is a {'link' if kind in (SYMLINK, LINK) else 'file'}"
                              f", but a layer above puts files inside it (they would be written through it)",
                              "the image is refused; rebuild it so that directory stays a directory")
        if kind == DROPPED:
            self.report.devices_dropped += 1
            self._claimed[path] = (number, DROPPED)
            return

        mode = member.mode & 0o1777
        if member.mode & 0o6000:
            self.report.setid_cleared += 1
        xattrs = {}
        for key, value in member.xattrs.items():
            if key.startswith(KEEP_XATTR_PREFIX):
                xattrs[key] = value
            else:
                self.report.xattrs_dropped += 1
        linkname, size = "", 0
        if kind == SYMLINK:
            if not member.linkname or "\0" in member.linkname:
                raise UnsafeLayer(f"layer {layer}: symlink '{member.name}' has an empty target",
                                  "the image is refused; rebuild it")
            linkname = member.linkname
        elif kind == LINK:
            linkname = clean_path(member.linkname, layer, what=f"hardlink '{member.name}' -> target")
            self._check_link_target(path, linkname, number, layer, member.name)
        elif kind == REG:
            size = member.size
        self._claimed[path] = (number, kind)
        for ancestor in _parents(path):
            self._implied.setdefault(ancestor, number)
        self._writer.header(path, _OUT_TYPE[kind], mode, member.uid, member.gid, member.uname, member.gname,
                            member.mtime, size, linkname, xattrs)
        if size:
            reader.copy_to(self._writer, size)
        if kind == REG and path in self._pending_links:
            self._pending_links.pop(path)

    def _check_link_target(self, path: str, target: str, number: int, layer: str, raw_name: str) -> None:
        if not target or target == path:
            raise UnsafeLayer(f"layer {layer}: hardlink '{raw_name}' points to itself or to the root",
                              "the image is refused; rebuild it")
        claimed = self._claimed.get(target)
        if claimed is None:
            self._pending_links[target] = (raw_name, layer)  # a file of a lower layer, checked when it comes
            return
        if claimed[0] != number:
            raise UnsafeLayer(f"layer {layer}: hardlink '{raw_name}' points to '{target}', which a newer layer "
                              "replaced", "the image is refused; rebuild it without the stale hardlink")
        if claimed[1] != REG:
            raise UnsafeLayer(f"layer {layer}: hardlink '{raw_name}' points to '{target}', which is not a regular "
                              "file", "the image is refused; rebuild it")

    def finish(self) -> FlattenReport:
        if self._pending_links:
            target, (link, layer) = next(iter(self._pending_links.items()))
            raise UnsafeLayer(f"layer {layer}: hardlink '{link}' points to '{target}', which is not a regular file "
                              "of the image", "the image is refused; rebuild it")
        (self._writer or ts.TarWriter(self.out)).end()
        return self.report

