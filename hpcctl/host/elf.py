"""An ELF shared object's soname and symbol versions: which versions it needs from other libraries, which it defines.

Enough of ELF64 little-endian (x86-64, aarch64) to read .gnu.version_r and .gnu.version_d; anything else gives
empty answers, so callers skip the check rather than guess.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from hpcctl.host.files import read_regular

SHT_DYNAMIC = 6
DT_SONAME = 14
SHT_GNU_VERDEF = 0x6FFFFFFD
SHT_GNU_VERNEED = 0x6FFFFFFE
VER_FLG_BASE = 0x1

MAX_BYTES = 256 << 20  # a larger file is not read (its versions are then unknown, and checks are skipped)


@dataclass
class Versions:
    needed: dict[str, set[str]] = field(default_factory=dict)  # file (soname) -> versions needed from it
    defined: set[str] = field(default_factory=set)
    soname: str = ""


def _cstr(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    return data[offset:end if end >= 0 else len(data)].decode(errors="replace")


def read(path: str) -> Versions:
    out = Versions()
    data = read_regular(path, MAX_BYTES)
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return out
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    if not shoff or shentsize < 64 or shoff + shnum * shentsize > len(data):
        return out
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    for _name, kind, _flags, _addr, offset, size, link, info, _align, _entsize in sections:
        if kind not in (SHT_DYNAMIC, SHT_GNU_VERNEED, SHT_GNU_VERDEF) or link >= shnum:
            continue
        strtab = sections[link][4]
        if kind == SHT_DYNAMIC:
            for pos in range(offset, min(offset + size, len(data) - 15), 16):
                tag, value = struct.unpack_from("<qQ", data, pos)
                if tag == DT_SONAME:
                    out.soname = _cstr(data, strtab + value)
            continue
        pos = offset
        for _ in range(info):
            if kind == SHT_GNU_VERNEED:
                _ver, count, file_name, aux, nxt = struct.unpack_from("<HHIII", data, pos)
                versions = out.needed.setdefault(_cstr(data, strtab + file_name), set())
                apos = pos + aux
                for _ in range(count):
                    _hash, _aflags, _other, name, anext = struct.unpack_from("<IHHII", data, apos)
                    versions.add(_cstr(data, strtab + name))
                    apos += anext
            else:
                _ver, flags, _ndx, _count, _hash, aux, nxt = struct.unpack_from("<HHHHIII", data, pos)
                name, = struct.unpack_from("<I", data, pos + aux)
                if not flags & VER_FLG_BASE:
                    out.defined.add(_cstr(data, strtab + name))
            if not nxt:
                break
            pos += nxt
    return out
