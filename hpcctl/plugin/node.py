"""This node's Slurm name, from trusted facts only: slurm.conf (root's), the host name (the kernel's) and, where
slurm.conf puts several nodes on this host (several slurmd on one host, as in the sandbox), the socket the step's
slurmstepd listens on (SPOOL/NODE_JOB.STEP). SLURMD_NODENAME in the job's environment is the user's to set and is
never read.
"""

from __future__ import annotations

import contextlib
import os

from hpcctl.errors import HpcctlError
from hpcctl.site.nodes import NODE_NAME, nodes_on_host, slurm_conf_text


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
    candidates = nodes_on_host(slurm_conf_text(config_dir), host)
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
