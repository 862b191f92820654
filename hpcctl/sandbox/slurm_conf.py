"""The sandbox's Slurm configuration files, rendered from the layout."""

from __future__ import annotations

from pathlib import Path

from hpcctl.sandbox import layout as L


def slurm_conf(host: str) -> str:
    nodes = f"n[1-{len(L.NODES)}]"
    ports = f"[{L.NODE_PORTS[L.NODES[0]]}-{L.NODE_PORTS[L.NODES[-1]]}]"
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
KillWait=5
MinJobAge=600
MessageTimeout=20
SlurmctldTimeout=60
SlurmdTimeout=120
Waittime=0
NodeName={nodes} NodeHostname={host} NodeAddr=127.0.0.1 Port={ports} CPUs={L.NODE_CPUS} \
RealMemory={L.NODE_MEMORY_MB} Gres=gpu:{L.GPU_TYPE}:{L.GPUS_PER_NODE} State=UNKNOWN
PartitionName={L.PARTITION} Nodes={nodes} Default=YES MaxTime=01:00:00 State=UP
"""


def gres_conf() -> str:
    lines = ["# Written by `hpcctl sandbox up`: fake GPUs (character devices, major 195).", "AutoDetect=off"]
    for node in L.NODES:
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


def write_all(host: str) -> bool:
    """Write every Slurm config file; True when any changed (the daemons then need a restart)."""
    files = {
        L.SLURM_ETC / "slurm.conf": slurm_conf(host),
        L.SLURM_ETC / "gres.conf": gres_conf(),
        L.SLURM_ETC / "cgroup.conf": CGROUP_CONF,
        L.SLURM_ETC / "plugstack.conf": PLUGSTACK_CONF,
    }
    changed = [write_if_changed(path, text) for path, text in files.items()]
    return any(changed)
