"""An image's tree as the job's user sees it, for the few facts the plan needs from inside an image.

Root never reads image content on the host's view of the system: a confined child (hpcctl.container.confined) mounts
the squashfs read-only in a private mount namespace (kernel squashfs, on a loop device that goes away with the
namespace), changes into it, becomes the job's user and reads from there. A file image is opened with the user's
rights, so a path the user swaps for a link cannot hand them a file they could not read.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import contextmanager

from hpcctl.container import confined
from hpcctl.container.access import Identity
from hpcctl.container.state import runtime_root
from hpcctl.errors import HpcctlError

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 0x4000, 1 << 18
LOOP_CTL_GET_FREE, LOOP_CONFIGURE = 0x4C82, 0x4C0A
LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR = 1, 4
_LOOP_CONFIG_SIZE = 304  # struct loop_config: fd, block_size, loop_info64 (232 bytes), 8 reserved u64
_LO_OFFSET, _LO_SIZELIMIT, _LO_FLAGS_OFFSET = 8 + 24, 8 + 32, 8 + 52  # loop_config.info.lo_offset, ...


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


@contextmanager
def _as_user(who: Identity):
    """File-system access with ``who``'s rights for the block (effective ids; root keeps its saved ids)."""
    if os.geteuid() != 0 or who.uid == 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups(list(who.groups))
    os.setegid(who.gid)
    os.seteuid(who.uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def open_image_file(path: str, who: Identity) -> int:
    """A read-only fd of a squashfs file, opened with ``who``'s rights; never blocks (a FIFO is refused)."""
    with _as_user(who):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


def _loop_device(image_fd: int, offset: int = 0, size: int = 0) -> int:
    """An fd of a free loop device now backed by ``image_fd`` (``size`` bytes from ``offset``; 0: to the end),
    read-only, cleared when its last user goes."""
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(20):
            number = _ioctl(ctl, LOOP_CTL_GET_FREE, 0)
            loop = os.open(f"/dev/loop{number}", os.O_RDONLY | os.O_CLOEXEC)
            config = bytearray(_LOOP_CONFIG_SIZE)
            struct.pack_into("<I", config, 0, image_fd)
            struct.pack_into("<QQ", config, _LO_OFFSET, offset, size)
            struct.pack_into("<I", config, _LO_FLAGS_OFFSET, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR)
            buffer = (ctypes.c_char * len(config)).from_buffer(config)
            if _libc().ioctl(loop, LOOP_CONFIGURE, buffer) == 0:
                return loop
            code = ctypes.get_errno()
            os.close(loop)
            if code != errno.EBUSY:
                raise OSError(code, f"cannot set up a loop device: {os.strerror(code)}")
        raise OSError(errno.EBUSY, "no free loop device")
    finally:
        os.close(ctl)


def _ioctl(fd: int, request: int, arg: int) -> int:
    result = _libc().ioctl(fd, request, arg)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"loop-control: {os.strerror(code)}")
    return result


def _mount_privately(image_fd: int, mountpoint: str, offset: int = 0, size: int = 0) -> None:
    """In a new, private mount namespace: the squashfs at ``mountpoint``, read-only, nosuid, nodev, noexec."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    loop = _loop_device(image_fd, offset, size)
    try:
        _check(libc.mount(f"/dev/loop{_loop_number(loop)}".encode(), mountpoint.encode(), b"squashfs",
                          MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount the image as squashfs")
    finally:
        os.close(loop)


def _loop_number(loop_fd: int) -> int:
    return os.minor(os.fstat(loop_fd).st_rdev)


def _squashfuse(path: str, mountpoint: str, offset: int = 0) -> None:
    try:
        result = subprocess.run(["squashfuse", "-o", f"ro,offset={offset}" if offset else "ro", path, mountpoint],
                                capture_output=True, text=True,
                                timeout=30, check=False)
    except FileNotFoundError:
        raise HpcctlError(f"cannot read {path}: squashfuse is not installed on this machine",
                          "install squashfuse (apt-get install squashfuse), run as root, or pass a root tree")
    if result.returncode:
        raise HpcctlError(f"cannot mount {path} with squashfuse: {result.stderr.strip()}",
                          "run as root, or pass an unpacked root tree")


def read(path: str, who: Identity, work: Callable[[], object], what: str, scratch: str,
         user_file: bool = False, seconds: float = 30, offset: int = 0, size: int = 0,
         open_as: tuple[int, int] | None = None):
    """``work()`` run with the image's root tree as its working directory, as ``who``. ``path``: a squashfs file
    or a root directory; ``scratch``: a root-only directory to mount on (in the child's namespace only);
    ``user_file``: ``path`` is the user's, opened with their rights (a cached image is opened as root);
    ``offset``/``size``: where the squashfs lies in ``path`` (a .sif's system partition); ``open_as``: the
    (uid, gid) whose rights open a shared store's image (its owner)."""
    if os.path.isdir(path):
        if user_file:  # the user's tree is entered with their rights, after the child became them
            return confined.run(lambda: (os.chdir(path), work())[1], who, what, seconds)
        return confined.run(work, who, what, seconds, prepare=lambda: os.chdir(path))
    if os.geteuid() != 0:
        return _read_with_squashfuse(path, who, work, what, seconds, offset)
    try:
        opener = who if user_file else Identity(*open_as, ()) if open_as else Identity(0, 0)
        image_fd = open_image_file(path, opener)
    except OSError as exc:
        raise HpcctlError(f"cannot open the image {path}: {exc.strerror}",
                          "pass a squashfs file that you can read") from None
    runtime_root(os.path.dirname(scratch))
    os.makedirs(scratch, mode=0o700, exist_ok=True)

    def prepare() -> None:
        _mount_privately(image_fd, scratch, offset, size)
        os.chdir(scratch)

    try:
        return confined.run(work, who, what, seconds, prepare=prepare)
    finally:
        os.close(image_fd)


def _read_with_squashfuse(path: str, who: Identity, work, what: str, seconds: float, offset: int = 0):
    """Without root (hpcctl site explain by a user): squashfuse, as the caller, unmounted afterwards."""
    mountpoint = tempfile.mkdtemp(prefix="hpcctl-image-")
    try:
        _squashfuse(path, mountpoint, offset)
        try:
            return confined.run(work, who, what, seconds, prepare=lambda: os.chdir(mountpoint))
        finally:
            subprocess.run(["fusermount", "-u", mountpoint], capture_output=True, check=False)
    finally:
        os.rmdir(mountpoint)
