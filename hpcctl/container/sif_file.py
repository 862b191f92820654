"""A .sif the user names, as a step's image: its header read with the user's rights, before anything is mounted.

The file is opened as the user (hpcctl.container.image_view.open_image_file), so a .sif they cannot read is refused
here, and its primary system partition becomes the image: the C side loop-mounts those bytes of the same file,
opened as the user again, read-only like any squashfs file (hpcctl.image.sif says what is refused and why).
"""

from __future__ import annotations

import os
import stat

from hpcctl.container.access import Identity
from hpcctl.container.build import Image
from hpcctl.container.image_view import open_image_file
from hpcctl.container.singularity import RUNSCRIPT
from hpcctl.errors import HpcctlError
from hpcctl.image import sif


def is_sif(path: str) -> bool:
    return path.endswith(".sif")


def check_submitted(path: str) -> None:
    """At submission, as the submitting user: a .sif no node could run is refused before the job is queued (its
    architecture is left to the nodes, which may differ from the submit host)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return  # the caller reports files it cannot read
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # anything else is the nodes' to refuse, unread
            sif.read(fd).partition_for(None)
    except sif.BadSif as exc:
        raise sif.BadSif(f"--container-image: {path}: {exc.problem}", exc.fix) from None
    finally:
        os.close(fd)


def sif_image(path: str, reference: str, who: Identity) -> Image:
    """The Image of the .sif at ``path`` (absolute); BadSif or HpcctlError, one line naming ``reference``."""
    try:
        fd = open_image_file(path, who)
    except OSError as exc:
        raise HpcctlError(f"--container-image: {reference}: {exc.strerror.lower()}",
                          "pass a .sif file that exists on the compute nodes and that you can read") from None
    try:
        part = sif.read(fd).system_partition
    except sif.BadSif as exc:
        raise sif.BadSif(f"--container-image: {reference}: {exc.problem}", exc.fix) from None
    finally:
        os.close(fd)
    return Image(path=path, reference=reference, config={"Cmd": [RUNSCRIPT]}, user_file=True, offset=part.offset,
                 size=part.size)
