"""The job's user and groups in the container's /etc/passwd and /etc/group (as enroot does), so that `id`, `whoami`,
ssh, Python's getpass and MPI launchers that look the user up work in any image.

The image's own entries are kept; the user's replace any with the same name or uid. The files are written on the
node (never into the cached image) and bound read-only over the image's.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd

from hpcctl.container.image_facts import ImageFacts
from hpcctl.container.plan import PlanMount
from hpcctl.container.state import publish


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


def identity_mounts(facts: ImageFacts, uid: int, gid: int, groups: tuple[int, ...],
                    state_dir: str) -> list[PlanMount]:
    """passwd and group for the user, from the image's (``facts``), published under ``state_dir`` (root-only) in a
    directory named by their content; the mounts that put them in the container. Nothing for root, or for a uid
    the node does not know."""
    if uid == 0:
        return []
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        return []
    passwd_data = passwd_text(facts.passwd, user)
    group_data = group_text(facts.group, user.pw_name, [gid, *groups])
    key = hashlib.sha256(f"{passwd_data}\0{group_data}".encode()).hexdigest()[:16]
    directory = os.path.join(state_dir, f"identity-{uid}-{key}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    why = "the image's entries plus the job's user"
    return [PlanMount(publish(directory, "passwd", passwd_data), "/etc/passwd", readonly=True, create="file",
                      why=why),
            PlanMount(publish(directory, "group", group_data), "/etc/group", readonly=True, create="file", why=why)]
