"""This node's Slurm name, from trusted facts only: slurm.conf (root's), the host name (the kernel's) and, where
slurm.conf puts several nodes on this host (several slurmd on one host, as in the sandbox), the socket the step's
slurmstepd listens on (SPOOL/NODE_JOB.STEP). SLURMD_NODENAME in the job's environment is the user's to set and is
never read.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex

from hpcctl.errors import HpcctlError
from hpcctl.slurm.hostlist import expand

NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def nodes_on_host(slurm_conf: str, host: str) -> list[str]:
    """Names of slurm.conf's nodes whose NodeHostname (default: the node name) is ``host`` (short names)."""
    short = host.split(".")[0]
    found: list[str] = []
    for line in slurm_conf.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.lower().startswith("nodename="):
            continue
        try:
            fields = {k.lower(): v for k, _, v in (item.partition("=") for item in shlex.split(line))}
        except ValueError:
            continue
        names = expand(fields["nodename"])
        if names == ["DEFAULT"]:
            continue
        hosts = expand(fields["nodehostname"]) if "nodehostname" in fields else names
        if len(hosts) == 1:
            hosts *= len(names)
        found += [name for name, name_host in zip(names, hosts) if name_host.split(".")[0] == short]
    return found


def _slurm_conf(config_dir: str) -> str:
    try:
        with open(os.path.join(config_dir, "slurm.conf")) as fh:
            return fh.read()
    except OSError:
        return ""


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    return inodes


def stepd_node(stepd_pid: int, job_id: int, candidates: list[str], spool_for) -> str | None:
    """Which of ``candidates`` the slurmstepd ``stepd_pid`` serves: the node named by the socket it listens on."""
    inodes = _socket_inodes(stepd_pid)
    try:
        with open("/proc/net/unix") as fh:
            paths = [fields[7] for fields in map(str.split, fh) if len(fields) > 7 and fields[6] in inodes]
    except OSError:
        return None
    for name in candidates:
        prefix = f"{spool_for(name)}/{name}_{job_id}."
        if any(path.startswith(prefix) for path in paths):
            return name
    return None


def this_node(config_dir: str, host: str, stepd_pid: int, job_id: int, spool_for) -> str:
    """The node this step runs on. ``stepd_pid``: the step's slurmstepd (the shim's own pid there)."""
    candidates = nodes_on_host(_slurm_conf(config_dir), host)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates and NODE_NAME.fullmatch(host.split(".")[0]):
        return host.split(".")[0]
    found = stepd_node(stepd_pid, job_id, candidates, spool_for)
    if found:
        return found
    raise HpcctlError(f"cannot tell which of the nodes {', '.join(candidates) or '(none)'} of "
                      f"{config_dir}/slurm.conf this host ({host}) is",
                      "give each node its own NodeHostname in slurm.conf, or report it to your site admins")
