"""The job's user and groups in the container's /etc/passwd and /etc/group (as enroot does), so that `id`, `whoami`,
ssh, Python's getpass and MPI launchers that look the user up work in any image.

The image's own entries are kept; the user's replace any with the same name or uid. The files are written on the
node (never into the cached image) and bound read-only over the image's.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess

from hpcctl.runtime.plan import PlanMount

MAX_BYTES = 1 << 20  # an image's passwd or group file beyond this is ignored, not read


def image_file(image: str, relative: str) -> str:
    """Text of a regular file in the image ('' when missing, not regular, or too big). Symlinks are not followed:
    the caller is root and the image is untrusted."""
    if os.path.isdir(image):
        try:
            fd = os.open(os.path.join(image, relative), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return ""
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return ""
            data = fh.read(MAX_BYTES + 1)
    else:
        result = subprocess.run(["unsquashfs", "-cat", image, relative], capture_output=True, timeout=60,
                                check=False)
        data = result.stdout if result.returncode == 0 else b""
    return "" if len(data) > MAX_BYTES else data.decode(errors="replace")


def _fields(line: str) -> list[str]:
    return line.split(":")


def passwd_text(image_text: str, user: pwd.struct_passwd) -> str:
    keep = [line for line in image_text.splitlines()
            if line.strip() and len(_fields(line)) >= 3
            and _fields(line)[0] != user.pw_name and _fields(line)[2] != str(user.pw_uid)]
    if not any(_fields(line)[2] == "0" for line in keep):  # Slurm's commands in the container look root up
        keep.insert(0, "root:x:0:0:root:/root:/bin/sh")
    keep.append(f"{user.pw_name}:x:{user.pw_uid}:{user.pw_gid}:{user.pw_gecos}:{user.pw_dir}:{user.pw_shell}")
    return "\n".join(keep) + "\n"


def group_text(image_text: str, user: str, gids: list[int]) -> str:
    lines = [_fields(line) for line in image_text.splitlines() if line.strip() and len(_fields(line)) >= 4]
    by_gid = {fields[2]: fields for fields in lines}
    names = {fields[0] for fields in lines}
    for gid in dict.fromkeys(gids):
        fields = by_gid.get(str(gid))
        if fields is not None:
            members = [m for m in fields[3].split(",") if m]
            if user not in members:
                fields[3] = ",".join(members + [user])
            continue
        try:
            name = grp.getgrgid(gid).gr_name
        except KeyError:
            continue
        if name not in names:
            lines.append([name, "x", str(gid), user])
            names.add(name)
    return "".join(":".join(fields) + "\n" for fields in lines)


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def identity_mounts(image: str, uid: int, gid: int, groups: tuple[int, ...], directory: str) -> list[PlanMount]:
    """Write passwd and group for the user into ``directory``; the mounts that put them in the container.
    Nothing for root, or for a uid the node does not know."""
    if uid == 0:
        return []
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        return []
    os.makedirs(directory, mode=0o700, exist_ok=True)
    passwd, group = os.path.join(directory, "passwd"), os.path.join(directory, "group")
    _write(passwd, passwd_text(image_file(image, "etc/passwd"), user))
    _write(group, group_text(image_file(image, "etc/group"), user.pw_name, [gid, *groups]))
    why = "the image's entries plus the job's user"
    return [PlanMount(passwd, "/etc/passwd", readonly=True, create="file", why=why),
            PlanMount(group, "/etc/group", readonly=True, create="file", why=why)]
