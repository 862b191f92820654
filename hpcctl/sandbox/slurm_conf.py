"""The sandbox's Slurm configuration files, rendered from the layout."""

from __future__ import annotations

from pathlib import Path

from hpcctl.sandbox import layout as L


def _node_range(names: tuple[str, ...]) -> tuple[str, str]:
    """('n3', ..., 'n16') -> ('n[3-16]', '[17003-17016]'): the NodeName and Port values of consecutive nodes."""
    first, last = names[0][1:], names[-1][1:]
    return f"n[{first}-{last}]", f"[{L.node_port(names[0])}-{L.node_port(names[-1])}]"


def _node_lines(host: str, count: int) -> str:
    """The GPU nodes (the `debug` partition's) with their fake GPUs, then the others without GPUs."""
    common = f"NodeHostname={host} NodeAddr=127.0.0.1"
    resources = f"CPUs={L.NODE_CPUS} RealMemory={L.NODE_MEMORY_MB}"
    names, ports = _node_range(L.GPU_NODES)
    lines = [f"NodeName={names} {common} Port={ports} {resources} Gres=gpu:{L.GPU_TYPE}:{L.GPUS_PER_NODE} "
             "State=UNKNOWN"]
    others = L.nodes(count)[len(L.GPU_NODES):]
    if others:
        names, ports = _node_range(others)
        lines.append(f"NodeName={names} {common} Port={ports} {resources} State=UNKNOWN")
    return "\n".join(lines)


def slurm_conf(host: str, count: int) -> str:
    gpu_nodes, _ = _node_range(L.GPU_NODES)
    all_nodes, _ = _node_range(L.nodes(count))
    return f"""\
# Written by `hpcctl sandbox up`; changes are overwritten.
ClusterName=sandbox
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort=6817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={L.STATE_DIR}/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile={L.RUN_DIR}/slurmctld.pid
SlurmdPidFile={L.RUN_DIR}/slurmd-%n.pid
SlurmctldLogFile={L.log("slurmctld")}
SlurmdLogFile={L.LOG_DIR}/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
TmpFS=/tmp/slurmtmp_%n
GresTypes=gpu
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
PlugStackConfig={L.SLURM_ETC}/plugstack.conf
InactiveLimit=0
PrologFlags=Alloc
KillWait=5
MinJobAge=600
MessageTimeout=20
SlurmctldTimeout=60
SlurmdTimeout=120
Waittime=0
{_node_lines(host, count)}
PartitionName={L.PARTITION} Nodes={gpu_nodes} Default=YES MaxTime=01:00:00 State=UP
PartitionName={L.SCALE_PARTITION} Nodes={all_nodes} MaxTime=01:00:00 State=UP
"""


def gres_conf() -> str:
    lines = ["# Written by `hpcctl sandbox up`: fake GPUs (character devices, major 195).", "AutoDetect=off"]
    for node in L.GPU_NODES:
        devs = L.gpu_devices(node)
        first, last = devs[0].name[len("nvidia"):], devs[-1].name[len("nvidia"):]
        lines.append(f"NodeName={node} Name=gpu Type={L.GPU_TYPE} File={L.FAKE_GPU_DIR}/nvidia[{first}-{last}]")
    return "\n".join(lines) + "\n"


CGROUP_CONF = """\
# Written by `hpcctl sandbox up`. Devices are constrained so --gres=gpu:N shows only N fake GPUs.
CgroupPlugin=cgroup/v1
CgroupAutomount=yes
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=yes
"""

PLUGSTACK_CONF = f"include {L.SLURM_ETC}/plugstack.conf.d/*.conf\n"


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write ``text`` atomically unless the file already holds it; True when it changed."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def write_all(host: str, count: int) -> bool:
    """Write every Slurm config file for ``count`` nodes; True when any changed (the daemons then need a restart)."""
    files = {
        L.SLURM_ETC / "slurm.conf": slurm_conf(host, count),
        L.SLURM_ETC / "gres.conf": gres_conf(),
        L.SLURM_ETC / "cgroup.conf": CGROUP_CONF,
        L.SLURM_ETC / "plugstack.conf": PLUGSTACK_CONF,
    }
    changed = [write_if_changed(path, text) for path, text in files.items()]
    return any(changed)
