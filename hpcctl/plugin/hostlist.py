"""Slurm host lists ('n[1-3,7],gpu[01-02]') -> node names, to name this node from the step's facts."""

from __future__ import annotations

import re

_PART = re.compile(r"([^,\[]+)(?:\[([^\]]+)\])?([^,\[]*)")


def expand(hostlist: str) -> list[str]:
    names: list[str] = []
    pos = 0
    while pos < len(hostlist):
        match = _PART.match(hostlist, pos)
        if not match:
            break
        prefix, ranges, suffix = match.groups()
        if ranges is None:
            names.append(prefix + suffix)
        else:
            for item in ranges.split(","):
                low, _, high = item.partition("-")
                width = len(low)
                for n in range(int(low), int(high or low) + 1):
                    names.append(f"{prefix}{n:0{width}d}{suffix}")
        pos = match.end() + 1  # skip the comma
    return names


def this_node(env: dict, nodeid: int, fallback: str) -> str:
    """The node name: SLURMD_NODENAME when set, else entry ``nodeid`` of the step's (or job's) node list."""
    if env.get("SLURMD_NODENAME"):
        return env["SLURMD_NODENAME"]
    nodes = expand(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "")
    return nodes[nodeid] if 0 <= nodeid < len(nodes) else fallback
