"""Which device file a node's GPU GRES index means, from Slurm's gres.conf ``File=`` lines.

Slurm hands a step its GPUs as indices into the node's GRES list (SLURM_STEP_GPUS=0 on the second node of the
sandbox is /dev/fakegpu/nvidia2); only gres.conf knows which file that is.
"""

from __future__ import annotations

import shlex

from hpcctl.slurm.hostlist import expand


def gpu_files(text: str, node: str) -> list[str]:
    """Device files of ``node``'s GPUs in GRES index order; lines without NodeName apply to every node."""
    files: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = dict(kv.split("=", 1) for kv in shlex.split(line) if "=" in kv)
        fields = {k.lower(): v for k, v in fields.items()}
        if fields.get("name") != "gpu" or "file" not in fields:
            continue
        if "nodename" in fields and node not in expand(fields["nodename"]):
            continue
        files += expand(fields["file"])
    return files
