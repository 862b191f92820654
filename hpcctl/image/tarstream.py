"""A small streaming tar reader and writer for the flattener: headers parsed in Python, file data moved between
pipes by the kernel (os.splice). Headers and small files are read ahead and written out in batches of READ_AHEAD
bytes, so a layer of many small files costs a few system calls per batch rather than several per file; the data of
larger files never passes through the interpreter.

Reads ustar, POSIX pax (``x``/``g``) and GNU long names (``L``/``K``); GNU sparse files are refused. Writes ustar
headers, preceded by a pax header when a name, link, size, id or xattr does not fit ustar.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import stat
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

BLOCK = 512
CHUNK = 1 << 20
READ_AHEAD = 128 << 10  # bytes read from a pipe at once, and gathered before a write to a pipe
PIPE_BYTES = 1 << 20  # the buffer of the pipes between decompressor, flattener and tar2sqfs (fs.pipe-max-size)
REG, AREG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT = b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"
PAX, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE = b"x", b"g", b"L", b"K", b"S"


class TarFormatError(Exception):
    """The stream is not a tar archive we accept (bad checksum, truncated, sparse)."""


@dataclass(slots=True)
class Member:
    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: int
    size: int
    linkname: str
    xattrs: dict = field(default_factory=dict)  # name -> raw pax value (str)


def _decode(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(raw: bytes) -> int:
    if raw and raw[0] & 0x80:  # base-256 (GNU) for values too big for octal
        value = int.from_bytes(raw[1:], "big")
        return -((1 << (8 * len(raw) - 8)) - value) if raw[0] == 0xFF else value
    text = raw.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"bad number field {raw!r} in a tar header") from None


def _pax_records(data: bytes) -> dict:
    records, pos = {}, 0
    while pos < len(data):
        if data[pos:pos + 1] == b"\0":
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise TarFormatError("bad pax header record")
        length = int(data[pos:space])
        if length <= 0 or pos + length > len(data):
            raise TarFormatError("bad pax header record length")
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


class TarReader:
    """Iterate the members of a tar stream; each member's data is consumed by copy_to() or skipped."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.fd = stream.fileno() if isinstance(stream, io.FileIO) else None
        self._left = 0  # data + padding bytes of the current member not consumed yet
        self._data = 0  # data bytes of the current member
        self._global: dict = {}
        self._ahead = b""  # read from fd, not consumed yet: from offset _used
        self._used = 0

    def _read(self, n: int) -> bytes:
        if self.fd is not None:
            have = len(self._ahead) - self._used
            if have >= n:
                self._used += n
                return self._ahead[self._used - n:self._used]
            parts, got = [self._ahead[self._used:]], have
            self._ahead, self._used = b"", 0
            while got < n:
                chunk = os.read(self.fd, max(n - got, READ_AHEAD))
                if not chunk:
                    break
                if got + len(chunk) > n:
                    self._ahead, self._used = chunk, n - got
                    chunk = chunk[:n - got]
                parts.append(chunk)
                got += len(chunk)
            return b"".join(parts)
        data = self.stream.read(n)
        while data and len(data) < n:
            more = self.stream.read(n - len(data))
            if not more:
                break
            data += more
        return data

    def _read_exact(self, n: int, what: str) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise TarFormatError(f"unexpected end of the archive in {what}")
        return data

    def take_ahead(self, n: int) -> bytes:
        """Up to ``n`` bytes already read ahead (the rest is still in the pipe)."""
        data = self._ahead[self._used:self._used + n]
        self._used += len(data)
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            chunk = self._read(min(n, CHUNK))
            if not chunk:
                raise TarFormatError("unexpected end of the archive in file data")
            n -= len(chunk)

    def __iter__(self) -> Iterator[Member]:
        pax: dict = {}
        longname = longlink = None
        while True:
            if self._left:
                self._skip(self._left)
                self._left = 0
            header = self._read(BLOCK)
            if len(header) == 0 or header == b"\0" * BLOCK:
                return  # end-of-archive marker (or a missing one at a block boundary)
            if len(header) != BLOCK:
                raise TarFormatError("unexpected end of the archive in a header")
            stored = _number(header[148:156])
            if stored != sum(header[:148]) + 256 + sum(header[156:]) and stored != _signed_sum(header):
                raise TarFormatError("bad header checksum")
            kind = header[156:157]
            size = _number(header[124:136])
            if size < 0:
                raise TarFormatError("negative size in a tar header")
            padded = size + (-size % BLOCK)
            if kind in (PAX, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK):
                if size > 1 << 20:
                    raise TarFormatError("extended header larger than 1 MiB")
                data = self._read_exact(padded, "an extended header")[:size]
                if kind == PAX:
                    pax.update(_pax_records(data))
                elif kind == PAX_GLOBAL:
                    self._global.update(_pax_records(data))
                elif kind == GNU_LONGNAME:
                    longname = _decode(data)
                else:
                    longlink = _decode(data)
                continue
            if kind == GNU_SPARSE:
                raise TarFormatError("GNU sparse files are not supported")
            records = {**self._global, **pax}
            if any(k.startswith("GNU.sparse.") for k in records):
                raise TarFormatError("sparse files are not supported")
            name = _decode(header[0:100])
            if header[257:263] == b"ustar\0":
                prefix = _decode(header[345:500])
                if prefix:
                    name = f"{prefix}/{name}"
            name = records.get("path", longname if longname is not None else name)
            linkname = records.get("linkpath", longlink if longlink is not None else _decode(header[157:257]))
            size = int(records.get("size", size))
            padded = size + (-size % BLOCK)
            member = Member(
                name=name, type=kind, mode=_number(header[100:108]) & 0o7777,
                uid=int(records.get("uid", _number(header[108:116]))),
                gid=int(records.get("gid", _number(header[116:124]))),
                uname=records.get("uname", _decode(header[265:297])),
                gname=records.get("gname", _decode(header[297:329])),
                mtime=int(float(records.get("mtime", _number(header[136:148])))), size=size, linkname=linkname,
                xattrs={k[len("SCHILY.xattr."):]: v for k, v in records.items() if k.startswith("SCHILY.xattr.")})
            if kind in (REG, AREG) and member.name.endswith("/"):
                member.type = DIR
            pax, longname, longlink = {}, None, None
            self._left = padded if kind in (REG, AREG, CONT) or (size and kind not in (LNK, SYM, DIR, CHR, BLK,
                                                                                       FIFO)) else 0
            self._data = size if self._left else 0
            yield member

    def copy_to(self, sink: "TarWriter", size: int) -> None:
        """Move the current member's ``size`` data bytes (and its padding) to ``sink``."""
        if size != self._data:
            raise TarFormatError("data size mismatch")
        sink.copy_from(self, size)
        pad = self._left - size
        self._left = 0
        self._skip(pad)


class TarWriter:
    """Writes headers and data to a pipe fd (unbuffered, with splice for data) or to any binary file object."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.fd = out.fileno() if isinstance(out, io.FileIO) else None
        self.pipe = self.fd is not None and stat.S_ISFIFO(os.fstat(self.fd).st_mode)
        self._gathered: list[bytes] = []  # for a pipe: written at flush(), at the latest once READ_AHEAD is reached
        self._gathered_bytes = 0

    def write(self, data: bytes) -> None:
        if self.fd is None:
            self.out.write(data)
            return
        if self.pipe:
            self._gathered.append(data)
            self._gathered_bytes += len(data)
            if self._gathered_bytes >= READ_AHEAD:
                self.flush()
            return
        self._write_all(data)

    def flush(self) -> None:
        if self._gathered:
            data = b"".join(self._gathered)
            self._gathered, self._gathered_bytes = [], 0
            self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def copy_from(self, reader: TarReader, size: int) -> None:
        left = size
        ahead = reader.take_ahead(left)
        if ahead:
            self.write(ahead)
            left -= len(ahead)
        if left and self.fd is not None and reader.fd is not None and (self.pipe or _is_pipe(reader.fd)):
            self.flush()
            while left:
                moved = os.splice(reader.fd, self.fd, min(left, CHUNK))
                if moved == 0:
                    raise TarFormatError("unexpected end of the archive in file data")
                left -= moved
        while left:
            chunk = reader._read(min(left, CHUNK))
            if not chunk:
                raise TarFormatError("unexpected end of the archive in file data")
            self.write(chunk)
            left -= len(chunk)
        self._pad(size)

    def copy_from_file(self, fd: int, offset: int, size: int) -> None:
        """Write ``size`` bytes of the regular file ``fd`` from ``offset`` as a member's data (and its padding)."""
        end = offset + size
        self.flush()
        while offset < end:
            if self.fd is not None:
                moved = os.sendfile(self.fd, fd, offset, min(end - offset, CHUNK))
            else:
                chunk = os.pread(fd, min(end - offset, CHUNK), offset)
                self.write(chunk)
                moved = len(chunk)
            if not moved:
                raise TarFormatError("file data ended early")
            offset += moved
        self._pad(size)

    def _pad(self, size: int) -> None:
        pad = -size % BLOCK
        if pad:
            self.write(b"\0" * pad)

    def header(self, name: str, kind: bytes, mode: int, uid: int, gid: int, uname: str, gname: str, mtime: int,
               size: int = 0, linkname: str = "", xattrs: dict | None = None) -> None:
        pax = {f"SCHILY.xattr.{k}": v for k, v in (xattrs or {}).items()}
        raw_name = name.encode("utf-8", "surrogateescape")
        raw_link = linkname.encode("utf-8", "surrogateescape")
        if len(raw_name) > 100 or not raw_name.isascii():
            pax["path"] = name
        if len(raw_link) > 100 or not raw_link.isascii():
            pax["linkpath"] = linkname
        for key, value, limit in (("uid", uid, 0o7777777), ("gid", gid, 0o7777777), ("size", size, 0o77777777777),
                                  ("mtime", mtime, 0o77777777777)):
            if value < 0 or value > limit:
                pax[key] = str(value)
        for key, value in (("uname", uname), ("gname", gname)):
            if len(value.encode("utf-8", "surrogateescape")) > 32 or not value.isascii():
                pax[key] = value
        if pax:
            body = b"".join(_pax_record(k, v) for k, v in pax.items())
            self.write(_ustar(b"././@PaxHeader", PAX, 0o644, 0, 0, b"", b"", 0, len(body), b""))
            self.write(body + b"\0" * (-len(body) % BLOCK))
        self.write(_ustar(raw_name[:100], kind, mode, min(max(uid, 0), 0o7777777), min(max(gid, 0), 0o7777777),
                          uname.encode("utf-8", "surrogateescape")[:32], gname.encode("utf-8", "surrogateescape")[:32],
                          min(max(mtime, 0), 0o77777777777), size if size <= 0o77777777777 else 0, raw_link[:100]))

    def end(self) -> None:
        self.write(b"\0" * (2 * BLOCK))
        self.flush()


def _signed_sum(header: bytes) -> int:
    """The checksum old tars wrote with signed chars."""
    return sum(b - 256 if b > 127 else b for b in header[:148] + header[156:]) + 256


def widen_pipe(fd: int) -> None:
    """Give a pipe PIPE_BYTES of buffer (64 KiB by default), so the processes on its ends wait on each other less;
    where the system's or the user's pipe limits refuse, it keeps its size."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _is_pipe(fd: int) -> bool:
    return stat.S_ISFIFO(os.fstat(fd).st_mode)


def _pax_record(key: str, value: str) -> bytes:
    payload = f" {key}={value}\n".encode("utf-8", "surrogateescape")
    length = len(payload) + 1
    while len(str(length)) + len(payload) != length:
        length = len(str(length)) + len(payload)
    return str(length).encode() + payload


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _ustar(name: bytes, kind: bytes, mode: int, uid: int, gid: int, uname: bytes, gname: bytes, mtime: int,
           size: int, linkname: bytes) -> bytes:
    header = b"".join((
        name.ljust(100, b"\0"), _octal(mode, 8), _octal(uid, 8), _octal(gid, 8), _octal(size, 12),
        _octal(mtime, 12), b" " * 8, kind, linkname.ljust(100, b"\0"), b"ustar\x0000",
        uname.ljust(32, b"\0"), gname.ljust(32, b"\0"), _octal(0, 8), _octal(0, 8), b"\0" * 155, b"\0" * 12))
    checksum = b"%06o\0 " % sum(header)
    return header[:148] + checksum + header[156:]
