"""The streaming tar reader/writer behind the flattener: formats other tools write, and malformed archives."""

from __future__ import annotations

import io
import os
import tarfile
import threading

import pytest

from hpcctl.image import tarstream as ts


def make_tar(fmt, entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def info(name, kind=tarfile.REGTYPE, size=0, **kw):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size = kind, size
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def roundtrip(data: bytes, via_pipes: bool = False) -> bytes:
    """Read ``data`` with TarReader and write every member back with TarWriter."""
    if not via_pipes:
        out = io.BytesIO()
        writer = ts.TarWriter(out)
        reader = ts.TarReader(io.BytesIO(data))
        _copy_all(reader, writer)
        return out.getvalue()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    result = []
    feeder = threading.Thread(target=lambda: (os.write(in_w, data), os.close(in_w)))
    drainer = threading.Thread(target=lambda: result.append(_read_all(out_r)))
    feeder.start()
    drainer.start()
    with open(in_r, "rb", buffering=0) as src, open(out_w, "wb", buffering=0) as dst:
        _copy_all(ts.TarReader(src), ts.TarWriter(dst))
    feeder.join()
    drainer.join()
    return result[0]


def _read_all(fd) -> bytes:
    with open(fd, "rb") as fh:
        return fh.read()


def _copy_all(reader, writer):
    for m in reader:
        size = m.size if m.type in (ts.REG, ts.AREG) else 0
        writer.header(m.name, m.type, m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime, size, m.linkname, m.xattrs)
        if size:
            reader.copy_to(writer, size)
    writer.end()


LONG = "d" * 120 + "/" + "f" * 150


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("via_pipes", [False, True])
def test_roundtrip_keeps_names_data_links_and_ids(fmt, via_pipes):
    payload = os.urandom(70_000)
    name = LONG if fmt != tarfile.USTAR_FORMAT else "a/" + "b" * 90
    target = "../" + ("x" * 99 if fmt != tarfile.USTAR_FORMAT else "x" * 90)
    entries = [(info("dir", tarfile.DIRTYPE, mode=0o750), None),
               (info(name, size=len(payload), mode=0o640, uid=1234, gid=5678, mtime=1700000000), payload),
               (info("dir/link", tarfile.SYMTYPE, linkname=target), None),
               (info("hard", tarfile.LNKTYPE, linkname=name), None)]
    if fmt == tarfile.PAX_FORMAT:
        entries.append((info("näme-ütf8", size=3, uid=10_000_000), b"abc"))
    out = roundtrip(make_tar(fmt, entries), via_pipes)
    with tarfile.open(fileobj=io.BytesIO(out)) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert tf.extractfile(members[name]).read() == payload
        assert (members[name].uid, members[name].gid, members[name].mode) == (1234, 5678, 0o640)
        assert members["dir/link"].linkname == target and members["hard"].linkname == name
        if fmt == tarfile.PAX_FORMAT:
            assert tf.extractfile(members["näme-ütf8"]).read() == b"abc"
            assert members["näme-ütf8"].uid == 10_000_000


def test_files_across_read_ahead_boundaries_keep_their_bytes_through_pipes():
    sizes = [0, 1, 511, 512, 513, ts.READ_AHEAD - 513, ts.READ_AHEAD, ts.READ_AHEAD + 1, 3 * ts.READ_AHEAD + 7, 2]
    files = [(f"f{i}", os.urandom(size)) for i, size in enumerate(sizes)]
    out = roundtrip(make_tar(tarfile.PAX_FORMAT, [(info(name, size=len(data)), data) for name, data in files]),
                    via_pipes=True)
    with tarfile.open(fileobj=io.BytesIO(out)) as tf:
        assert [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()] == files


def test_xattrs_survive():
    ti = info("f", size=1)
    ti.pax_headers = {"SCHILY.xattr.user.k": "v"}
    (member,) = list(ts.TarReader(io.BytesIO(make_tar(tarfile.PAX_FORMAT, [(ti, b"x")]))))
    assert member.xattrs == {"user.k": "v"}


def test_bad_checksum_truncation_and_sparse_are_errors():
    data = bytearray(make_tar(tarfile.PAX_FORMAT, [(info("f", size=2000), b"y" * 2000)]))
    broken = bytes(data[:100]) + b"X" + bytes(data[101:])
    with pytest.raises(ts.TarFormatError, match="checksum"):
        list(ts.TarReader(io.BytesIO(broken)))
    with pytest.raises(ts.TarFormatError, match="unexpected end"):
        roundtrip(bytes(data[:1200]))
    sparse = info("s", size=0)
    sparse.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    with pytest.raises(ts.TarFormatError, match="sparse"):
        list(ts.TarReader(io.BytesIO(make_tar(tarfile.PAX_FORMAT, [(sparse, b"")]))))


def test_unconsumed_data_is_skipped():
    data = make_tar(tarfile.PAX_FORMAT, [(info("a", size=5000), b"a" * 5000), (info("b", size=1), b"b")])
    assert [m.name for m in ts.TarReader(io.BytesIO(data))] == ["a", "b"]
