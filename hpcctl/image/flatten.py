"""Merge untrusted layer tarballs into one clean tar stream, never touching the filesystem.

Layers are read top (newest) first. An entry is written only the first time its path is seen, so the newest version
wins; whiteouts (``.wh.NAME``) and opaque markers (``.wh..wh..opq``) hide what lower layers hold. The output goes
straight to tar2sqfs, so no directory tree is ever extracted and no process follows a path an image controls.

Hardlinks follow Docker: each name of a hardlink group keeps the file of the last layer that wrote that name. When
an upper layer replaces, deletes or hides some names of a group, the file goes to the first surviving name and the
other survivors link to it. A hidden file's data has passed by the time a later entry of its layer links to it, so
the data of hidden files is copied to an unlinked spill file for as long as their layer is being read (disk, not
memory: the spill holds at most one layer's hidden files). A hardlink to a symlink or FIFO becomes a copy of it.

Neutralized (the image still converts): absolute names (made relative), device nodes (dropped), setuid/setgid bits
of files and setuid of directories (cleared; setgid stays on directories, where it only passes the group on),
xattrs other than ``user.*`` (dropped: no file capabilities, no security labels), mtimes past 2106 (clamped: squashfs
keeps 32-bit seconds).
Rejected (UnsafeLayer): ``..`` in a name or hardlink target, entries placed inside a path that the same or an upper
layer made a symlink or file, hardlinks to a directory or to nothing the image holds, and any other entry that would
need a tar extractor to follow a link.
Symlink targets are stored as they are: they are data inside the squashfs and only ever resolve inside the
container's root.
"""

from __future__ import annotations

import os
import tempfile
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
MAX_MTIME = 0xFFFFFFFF  # 2106-02-07 06:28:15 UTC, the last second squashfs stores


@dataclass
class FlattenReport:
    entries: int = 0
    hidden: int = 0
    absolute_names: int = 0
    devices_dropped: int = 0
    setid_cleared: int = 0
    xattrs_dropped: int = 0
    other_dropped: int = 0
    mtimes_clamped: int = 0

    def notes(self) -> list[str]:
        out = []
        for label, count in (("absolute names made relative", self.absolute_names),
                             ("device nodes dropped", self.devices_dropped),
                             ("setuid/setgid bits cleared", self.setid_cleared),
                             ("security xattrs dropped", self.xattrs_dropped),
                             ("entries of unknown type dropped", self.other_dropped),
                             ("mtimes past 2106 clamped to 2106-02-07", self.mtimes_clamped)):
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


@dataclass(eq=False)
class _Node:
    """A file that hardlinks name: its entry (``kind`` and ``member``, None while a lower layer has yet to supply it),
    where its data went (``path`` in the output, or ``spill`` offset), the surviving (name, link entry) pairs
    ``waiting`` for it, the node it was ``merged`` into, and the ``origin`` (layer, link name, target) of the link
    that asked for it."""

    kind: str | None = None
    member: ts.Member | None = None
    path: str | None = None
    spill: int | None = None
    waiting: list = field(default_factory=list)
    merged: _Node | None = None
    origin: tuple = ()


def _final(node: _Node) -> _Node:
    while node.merged is not None:
        node = node.merged
    return node


@dataclass
class Flattener:
    """Feed layers newest first with add_layer(); finish() checks leftovers and ends the tar stream. Hidden files'
    data is spilled into ``spill_dir`` (the system's temporary directory when None) while their layer is read."""

    out: BinaryIO
    report: FlattenReport = field(default_factory=FlattenReport)
    spill_dir: str | None = None
    _writer: ts.TarWriter | None = None
    _spill: ts.TarWriter | None = None
    _claimed: dict = field(default_factory=dict)  # path -> (layer number, kind) of the surviving entry
    _implied: dict = field(default_factory=dict)  # directory path needed by an entry -> layer number
    _whiteouts: set = field(default_factory=set)  # paths deleted by an upper layer
    _opaque: set = field(default_factory=set)  # directories whose lower contents an upper layer hid
    _pending: dict = field(default_factory=dict)  # hardlink target a lower layer must supply -> _Node
    _layer_nodes: dict = field(default_factory=dict)  # path in the layer being read -> _Node, for links to it
    _layer_no: int = 0

    def add_layer(self, stream: BinaryIO, name: str) -> None:
        """Read one layer tar (uncompressed stream) and write its surviving entries."""
        if self._writer is None:
            self._writer = ts.TarWriter(self.out)
        number = self._layer_no
        self._layer_no += 1
        whiteouts, opaque = set(), set()
        last = None
        try:
            reader = ts.TarReader(stream)
            for member in reader:
                last = member.name
                self._entry(reader, member, number, name, whiteouts, opaque)
        except ts.TarFormatError as exc:
            where = f" in or after entry '{last}'" if last is not None else ""
            raise UnsafeLayer(f"layer {name} is not a valid tar archive{where}: {exc}",
                              "the image is refused; rebuild or re-push it") from None
        finally:
            self._end_layer()
        self._whiteouts |= whiteouts
        self._opaque |= opaque

    def finish(self) -> FlattenReport:
        if self._pending:
            layer, link, target = next(iter(self._pending.values())).origin
            raise UnsafeLayer(f"layer {layer}: hardlink '{link}' points to '{target}', which is not a regular file "
                              "of the image: no layer below it holds that path", "the image is refused; rebuild it")
        if self._spill is not None:
            self._spill.out.close()
        (self._writer or ts.TarWriter(self.out)).end()
        return self.report

    def _end_layer(self) -> None:
        self._layer_nodes.clear()
        if self._spill is not None:
            os.ftruncate(self._spill.fd, 0)
            os.lseek(self._spill.fd, 0, os.SEEK_SET)

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
        if not path or _record_whiteout(path, whiteouts, opaque):
            return
        self.report.entries += 1
        kind = _KIND.get(member.type, None)
        visible = not self._hidden(path, number)
        if visible:
            self._check_placement(path, kind, member.name, layer)
            self._claimed[path] = (number, kind or DROPPED)
        else:
            self.report.hidden += 1
        if kind == LINK:
            self._link(member, path, visible, number, layer)
        elif kind == REG:
            self._file(reader, member, path, visible)
        else:
            self._other(member, path, kind, visible, layer)
        if visible and kind not in (None, DROPPED):
            for ancestor in _parents(path):
                self._implied.setdefault(ancestor, number)

    def _check_placement(self, path: str, kind: str | None, raw_name: str, layer: str) -> None:
        for ancestor in _parents(path):
            claimed = self._claimed.get(ancestor)
            if claimed and claimed[1] != DIR:  # same layer: upper layers' links were handled by _hidden
                raise UnsafeLayer(f"layer {layer}: entry '{raw_name}' lies inside '{ancestor}', which this layer "
                                  "made a link or file (a tar extractor would write through it)",
                                  "the image is refused; rebuild it without such entries")
        if kind not in (None, DIR) and path in self._implied:
            raise UnsafeLayer(f"layer {layer}: '{raw_name}' is a {'link' if kind in (SYMLINK, LINK) else 'file'}"
                              f", but a layer above puts files inside it (they would be written through it)",
                              "the image is refused; rebuild it so that directory stays a directory")

    def _file(self, reader: ts.TarReader, member: ts.Member, path: str, visible: bool) -> None:
        """A regular file: written at its own path when it survives, else at the first surviving name that links to
        it from an upper layer, else spilled for the links of its own layer that may follow."""
        node = self._pending.pop(path, None) or _Node()
        node.kind, node.member = REG, member
        names = ([(path, member)] if visible else []) + node.waiting
        node.waiting = []
        if names:
            node.path = names[0][0]
            self._write_entry(node.path, REG, member, reader=reader)
            for name, link in names[1:]:
                self._write_link(name, link, node.path)
        else:
            node.spill = self._spill_data(reader, member.size)
        if node.path != path:
            self._layer_nodes[path] = node

    def _other(self, member: ts.Member, path: str, kind: str | None, visible: bool, layer: str) -> None:
        """A directory, symlink, FIFO or dropped entry; hardlinks that name it get a copy of it."""
        node = self._pending.pop(path, None) or _Node()
        node.kind, node.member = kind or DROPPED, member
        if visible and kind is None:
            self.report.other_dropped += 1
        elif visible and kind == DROPPED:
            self.report.devices_dropped += 1
        elif visible:
            self._write_entry(path, kind, member, layer=layer)
        for name, link in node.waiting:
            self._attach(name, link, node, layer)
        node.waiting = []
        if kind != DIR:
            self._layer_nodes[path] = node

    def _link(self, member: ts.Member, path: str, visible: bool, number: int, layer: str) -> None:
        target = clean_path(member.linkname, layer, what=f"hardlink '{member.name}' -> target")
        if not target or target == path:
            raise UnsafeLayer(f"layer {layer}: hardlink '{member.name}' points to itself or to the root",
                              "the image is refused; rebuild it")
        node = self._node_of(target, number, layer, member.name)
        self._layer_nodes[path] = node
        if visible:
            self._attach(path, member, node, layer)
        upper = self._pending.pop(path, None)
        if upper is not None:
            for name, link in upper.waiting:
                self._attach(name, link, node, layer)
            upper.waiting, upper.merged = [], node

    def _node_of(self, target: str, number: int, layer: str, raw_name: str) -> _Node:
        """What ``target`` names at this point of layer ``number``: an entry this layer already wrote, else what a
        lower layer will supply."""
        node = self._layer_nodes.get(target)
        claimed = self._claimed.get(target)
        if node is None and claimed and claimed[0] == number:
            if claimed[1] != REG:
                raise UnsafeLayer(f"layer {layer}: hardlink '{raw_name}' points to '{target}', which is a directory, "
                                  "not a regular file", "the image is refused; rebuild it")
            node = self._layer_nodes[target] = _Node(REG, path=target)
        if node is None:
            node = self._pending.setdefault(target, _Node(origin=(layer, raw_name, target)))
        return _final(node)

    def _attach(self, name: str, link: ts.Member, node: _Node, layer: str) -> None:
        """Give the surviving name ``name`` (of the hardlink entry ``link``) the file ``node``: its data, a link to
        it, or a copy of it."""
        node = _final(node)
        if node.kind is None:
            node.waiting.append((name, link))
        elif node.kind == REG and node.path is None:
            self._write_entry(name, REG, node.member, spill=node.spill)
            node.path = name
        elif node.kind == REG:
            self._write_link(name, link, node.path)
        elif node.kind == DIR:
            origin_layer, link_name, target = node.origin
            raise UnsafeLayer(f"layer {origin_layer}: hardlink '{link_name}' points to '{target}', which is a "
                              "directory, not a regular file", "the image is refused; rebuild it")
        elif node.kind == DROPPED:
            self.report.devices_dropped += 1
        else:
            self._write_entry(name, node.kind, node.member, layer=layer)

    def _write_entry(self, name: str, kind: str, member: ts.Member, reader: ts.TarReader | None = None,
                     spill: int | None = None, layer: str = "") -> None:
        """One header (sanitized) and, for a file, its data from ``reader`` or from the spill file."""
        linkname, size = "", 0
        if kind == SYMLINK:
            if not member.linkname or "\0" in member.linkname:
                raise UnsafeLayer(f"layer {layer}: symlink '{member.name}' has an empty target",
                                  "the image is refused; rebuild it")
            linkname = member.linkname
        elif kind == REG:
            size = member.size
        self._writer.header(name, _OUT_TYPE[kind], self._mode(member.mode, kind), member.uid, member.gid,
                            member.uname, member.gname, self._mtime(member.mtime), size, linkname,
                            self._xattrs(member.xattrs))
        if size and reader is not None:
            reader.copy_to(self._writer, size)
        elif size:
            self._writer.copy_from_file(self._spill.fd, spill, size)

    def _write_link(self, name: str, link: ts.Member, target: str) -> None:
        self._writer.header(name, ts.LNK, link.mode & 0o1777, link.uid, link.gid, link.uname, link.gname,
                            min(link.mtime, MAX_MTIME), 0, target)

    def _spill_data(self, reader: ts.TarReader, size: int) -> int:
        """Copy the current member's data to the spill file; returns its offset there."""
        if self._spill is None:
            self._spill = ts.TarWriter(tempfile.TemporaryFile(dir=self.spill_dir, buffering=0))
        offset = os.lseek(self._spill.fd, 0, os.SEEK_CUR)
        if size:
            reader.copy_to(self._spill, size)
        return offset

    def _mode(self, mode: int, kind: str) -> int:
        """Permission bits less setuid, and less setgid except on directories."""
        keep = 0o3777 if kind == DIR else 0o1777
        if mode & 0o6000 & ~keep:
            self.report.setid_cleared += 1
        return mode & keep

    def _mtime(self, mtime: int) -> int:
        if mtime > MAX_MTIME:
            self.report.mtimes_clamped += 1
            return MAX_MTIME
        return mtime

    def _xattrs(self, xattrs: dict) -> dict:
        kept = {key: value for key, value in xattrs.items() if key.startswith(KEEP_XATTR_PREFIX)}
        self.report.xattrs_dropped += len(xattrs) - len(kept)
        return kept


def _record_whiteout(path: str, whiteouts: set, opaque: set) -> bool:
    """Note a whiteout or opaque marker (they apply to lower layers only); False for an ordinary entry."""
    base = path.rsplit("/", 1)[-1]
    if not base.startswith(WHITEOUT):
        return False
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if base == OPAQUE:
        opaque.add(parent)
    elif not base.startswith(WHITEOUT + WHITEOUT):
        target = base[len(WHITEOUT):]
        whiteouts.add(f"{parent}/{target}" if parent else target)
    return True
