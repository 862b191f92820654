"""Content-addressed store of compressed layer blobs (``blobs/sha256/<hex>``) and reading them back as tar streams.

A blob is published under its digest only after its bytes hashed to it while streaming in; every later read hashes
them again, so a blob damaged on disk is caught before its content reaches an image.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from hpcctl.image.errors import DigestMismatch, RegistryError
from hpcctl.image.registry import Registry
from hpcctl.image.tarstream import widen_pipe

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _hex(digest: str) -> str:
    algo, _, value = digest.partition(":")
    if algo != "sha256" or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise RegistryError(f"layer digest '{digest}' is not a sha256 digest", "only sha256 digests are supported")
    return value


class LayerStore:
    def __init__(self, root: Path, tmp: Path):
        self.root = root
        self.tmp = tmp

    def path(self, digest: str) -> Path:
        return self.root / "sha256" / _hex(digest)

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def fetch(self, registry: Registry, descriptor: dict, progress: Callable[[int], None],
              private: bool = False) -> tuple[Path, int]:
        """The stored blob for ``descriptor``, downloading it if missing; returns (path, bytes downloaded).
        A ``private`` image's blob is readable by root only."""
        digest, size = descriptor["digest"], descriptor.get("size")
        final = self.path(digest)
        if self.has(digest, size):
            progress(size or 0)
            return final, 0
        final.parent.mkdir(parents=True, exist_ok=True)
        part = self.tmp / f"blob-{_hex(digest)}.{os.getpid()}.{threading.get_ident()}.part"
        try:
            with open(part, "wb") as out:
                registry.download_blob(digest, size, out, progress)
            os.chmod(part, 0o600 if private else 0o644)
            os.replace(part, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        return final, final.stat().st_size

    @contextlib.contextmanager
    def open_tar(self, digest: str, just_verified: bool = False) -> Iterator[BinaryIO]:
        """The uncompressed tar stream of a stored blob (gzip, zstd or plain, told by its first bytes). The blob is
        hashed as it is read (unless this process ``just_verified`` it while downloading); a mismatch deletes it and
        raises DigestMismatch once the stream is consumed, or in place of the error a damaged blob caused."""
        path = self.path(digest)
        hasher = hashlib.sha256()
        with open(path, "rb") as blob:
            head = blob.read(4)
            blob.seek(0)
            tool = _decompressor(head)
            if tool is None:
                reader = _HashingReader(blob, hasher)
                try:
                    yield reader
                except BaseException:
                    if not just_verified:
                        self._verify_file(digest)
                    raise
                reader.drain()
                self._check(digest, hasher)
                return
            if just_verified:  # the decompressor reads the file itself: no copy through Python
                with open(path, "rb", buffering=0) as source:
                    proc = subprocess.Popen(tool, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            bufsize=0)
                feeder = threading.Thread(target=lambda: None)
            else:
                proc = subprocess.Popen(tool, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        bufsize=0)
                feeder = threading.Thread(target=_feed, args=(blob, proc.stdin, hasher), daemon=True)
            widen_pipe(proc.stdout.fileno())
            feeder.start()
            ok = False
            try:
                yield proc.stdout
                ok = True
            finally:
                if ok:
                    while proc.stdout.read(CHUNK):
                        pass
                else:
                    proc.kill()
                feeder.join()
                proc.stdout.close()
                err = proc.stderr.read().decode(errors="replace").strip()
                proc.stderr.close()
                rc = proc.wait()
                if not ok and not just_verified:
                    self._verify_file(digest)
            if not just_verified:
                self._check(digest, hasher)
            if rc != 0:
                raise DigestMismatch(f"layer {digest} does not decompress: {err.splitlines()[-1] if err else rc}",
                                     "the image is refused; re-push it")

    def _verify_file(self, digest: str) -> None:
        """After reading a stored blob failed: if the blob itself is damaged, that (not the image) is the error, and
        the blob goes, so that the next pull downloads it again."""
        hasher = hashlib.sha256()
        with open(self.path(digest), "rb") as blob:
            while chunk := blob.read(CHUNK):
                hasher.update(chunk)
        self._check(digest, hasher)

    def _check(self, digest: str, hasher) -> None:
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            with contextlib.suppress(FileNotFoundError):
                self.path(digest).unlink()
            raise DigestMismatch(f"stored layer {digest} now hashes to {actual}; it was removed",
                                 "pull the image again")


def _decompressor(head: bytes) -> list[str] | None:
    if head.startswith(GZIP_MAGIC):
        return [shutil.which("pigz") or "gzip", "-dc"]
    if head.startswith(ZSTD_MAGIC):
        tool = shutil.which("zstd")
        if not tool:
            raise RegistryError("the image has zstd-compressed layers but the zstd tool is not installed",
                                "install the zstd package")
        return [tool, "-dcq"]
    return None


def _feed(source: BinaryIO, sink: BinaryIO, hasher) -> None:
    try:
        while chunk := source.read(CHUNK):
            hasher.update(chunk)
            sink.write(chunk)
    except (BrokenPipeError, ValueError):
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, ValueError):
            sink.close()


class _HashingReader:
    """A read-only file object that hashes what passes through it."""

    def __init__(self, raw: BinaryIO, hasher):
        self.raw, self.hasher = raw, hasher

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass
