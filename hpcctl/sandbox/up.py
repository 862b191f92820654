"""`hpcctl sandbox up|status|down`: bring the local cluster up step by step, idempotently, and take it down.

`up` records what it started in STATE_FILE, so `down` stops only that. Every step either finds its work done
(a second `up` takes seconds) or does it; a failure names the step and shows the tail of that daemon's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hpcctl.errors import HpcctlError
from hpcctl.resources import data_dir
from hpcctl.sandbox import daemons, mpi_image, packages, plugin, registry, slurm_conf, test_images, users
from hpcctl.sandbox import layout as L
from hpcctl.sandbox.daemons import Daemon, StepFailed
from hpcctl.sandbox.oci_push import Pusher

REPO_SITE = data_dir("site-configs") / "sandbox.yaml"


def munged() -> Daemon:
    return Daemon("munged", ("/usr/sbin/munged",), Path("/run/munge/munged.pid"), L.log("munged"), user="munge")


def slurmctld() -> Daemon:
    return Daemon("slurmctld", ("/usr/sbin/slurmctld",), L.RUN_DIR / "slurmctld.pid", L.log("slurmctld"))


def slurmd(node: str) -> Daemon:
    return Daemon(f"slurmd {node}", ("/usr/sbin/slurmd", "-N", node), L.RUN_DIR / f"slurmd-{node}.pid",
                  L.LOG_DIR / f"slurmd-{node}.log")


def all_daemons() -> list[Daemon]:
    return [munged(), slurmctld(), *(slurmd(n) for n in L.nodes()), *registry.daemons()]


def _ok(cmd: list[str]) -> bool:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def _munge_works() -> bool:
    return subprocess.run("munge -n | unmunge", shell=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def _node_states() -> dict[str, str]:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, encoding="utf-8",
                         errors="replace").stdout
    return dict(line.split()[:2] for line in out.splitlines() if len(line.split()) >= 2)


@dataclass
class Report:
    """What `up` did, step by step; printed as it goes unless quiet."""

    quiet: bool = False
    changed: int = 0

    def step(self, name: str, outcome: str, changed: bool = False) -> None:
        self.changed += changed
        if not self.quiet:
            print(f"  {name:<28} {outcome}", flush=True)


def _record_started(name: str) -> None:
    started = set(_started())
    started.add(name)
    L.STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    L.STATE_FILE.write_text(json.dumps(sorted(started)))


def _started() -> list[str]:
    try:
        return json.loads(L.STATE_FILE.read_text())
    except (OSError, ValueError):
        return []


def _start(daemon: Daemon, ready, report: Report, timeout: float = 30.0) -> None:
    if daemon.pid():
        report.step(daemon.name, f"running (pid {daemon.pid()})")
        return
    pid = daemons.start(daemon, ready, timeout)
    _record_started(daemon.name)
    report.step(daemon.name, f"started (pid {pid})", changed=True)


def _fake_gpus() -> bool:
    made = False
    L.FAKE_GPU_DIR.mkdir(parents=True, exist_ok=True)
    for node in L.GPU_NODES:
        for dev in L.gpu_devices(node):
            minor = int(dev.name[len("nvidia"):])
            if dev.exists() and stat.S_ISCHR(dev.stat().st_mode):
                continue
            os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(195, minor))
            dev.chmod(0o666)
            made = True
    return made


def _directories() -> None:
    for path in (L.STATE_DIR / "slurmctld", L.LOG_DIR, L.RUN_DIR, L.BUILD_CACHE, Path("/run/munge")):
        path.mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    for node in L.nodes():
        Path(f"/var/spool/slurmd/{node}").mkdir(parents=True, exist_ok=True)
        tmpfs = Path(f"/tmp/slurmtmp_{node}")
        tmpfs.mkdir(parents=True, exist_ok=True)
        tmpfs.chmod(0o1777)


def _clear_tmpfs(node: str) -> None:
    """Empty a stopped node's TmpFS: a fresh slurmctld numbers jobs from 1 again, and Slurm's PMIx plugin fails a
    step whose spmix_appdir_<uid>_<job>.<step> is left over from an earlier job with the same id."""
    for entry in Path(f"/tmp/slurmtmp_{node}").iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _clear_cgroups(node: str) -> None:
    """Remove a stopped node's leftover job cgroups (Slurm 22.05 leaves some behind). A job that got the id of an
    earlier one inherited its device rules, and could not open even the GPU it was given."""
    for top in Path("/sys/fs/cgroup").glob(f"*/slurm_{node}"):
        for folder, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
            if folder != str(top):
                with contextlib.suppress(OSError):  # a cgroup that still has processes stays
                    os.rmdir(folder)


def _site_config() -> bool:
    return slurm_conf.write_if_changed(L.SITE_FILE, REPO_SITE.read_text())


def _shared_site_config() -> bool:
    """The sandbox's site config with the shared image store (cache.shared) on: what the shared-store tests and
    benchmarks point plugstack.conf's site= at. The default config keeps node caches only, so the other tests
    and the benchmark's baseline see each node convert for itself."""
    text = REPO_SITE.read_text()
    if "\ncache:\n" not in text:
        raise StepFailed("site config", f"{REPO_SITE} has no cache: section to add the shared store to")
    shared = f"  shared: {{root: {L.SHARED_STORE}, owner: {L.STORE_USER}, mode: mount}}\n"
    return slurm_conf.write_if_changed(L.SHARED_SITE_FILE, text.replace("\ncache:\n", "\ncache:\n" + shared, 1))


def _restart(report: Report, names: list[Daemon]) -> None:
    for daemon in names:
        if daemons.stop(daemon):
            report.step(daemon.name, "stopped for new config", changed=True)


def _wait_nodes_idle(timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    resumed = False
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = _node_states()
        if all(states.get(n, "").rstrip("*") in ("idle", "mixed", "allocated") for n in L.nodes()):
            return
        if not resumed and any(s.startswith(("drain", "down")) for s in states.values()):
            subprocess.run(["scontrol", "update", f"NodeName=n[1-{L.node_count()}]", "State=RESUME"],
                           capture_output=True)
            resumed = True
        time.sleep(0.5)
    raise StepFailed("nodes idle", f"node states after {timeout:.0f} s: {states or 'sinfo gave nothing'}",
                     L.LOG_DIR / "slurmd-n1.log")


def _node_count(wanted: int | None, report: Report) -> None:
    """Record the node count (``wanted``, else the one recorded before); stop the slurmd of nodes it drops."""
    before = L.node_count()
    count = before if wanted is None else wanted
    if not len(L.GPU_NODES) <= count <= L.MAX_NODES:
        raise HpcctlError(f"--nodes {count}: the sandbox has {len(L.GPU_NODES)} to {L.MAX_NODES} nodes",
                          f"pass --nodes between {len(L.GPU_NODES)} and {L.MAX_NODES}")
    for node in L.nodes(before)[count:]:
        if daemons.stop(slurmd(node)):
            report.step(slurmd(node).name, "stopped (fewer nodes)", changed=True)
    if count != before or not L.SETTINGS_FILE.exists():
        L.remember_node_count(count)


def up(quiet: bool = False, images: bool = True, nodes: int | None = None) -> int:
    """Bring everything up with ``nodes`` slurmd nodes (default: as many as last time, else 2); returns how many
    steps changed something (0 when all was already up)."""
    if os.geteuid() != 0:
        raise HpcctlError("hpcctl sandbox up must run as root", "run it with sudo or as root")
    report = Report(quiet)
    _node_count(nodes, report)
    L.LOG_DIR.mkdir(parents=True, exist_ok=True)
    installed = packages.ensure(str(L.log("apt")))
    report.step("packages", f"installed {len(installed)}" if installed else "present", bool(installed))
    _directories()
    made = users.ensure_test_users()
    report.step("test users", f"created {', '.join(made)}" if made else f"{L.TEST_USER}, {L.OTHER_USER} exist",
                bool(made))
    made = users.ensure_store_account()
    report.step("shared image store", f"created {L.SHARED_STORE}" if made else f"{L.SHARED_STORE} exists", made)
    made = _fake_gpus()
    report.step("fake GPUs", "created" if made else f"{L.FAKE_GPU_DIR}/nvidia[0-3] exist", made)
    made = _site_config()
    report.step("site config", "written" if made else f"{L.SITE_FILE} up to date", made)
    made = _shared_site_config()
    report.step("shared-store site config", "written" if made else f"{L.SHARED_SITE_FILE} up to date", made)
    _start(munged(), _munge_works, report)

    conf_changed = slurm_conf.write_all(L.host(), L.node_count())
    plugin_changed = plugin.build_and_install(L.log("plugin-build"))
    report.step("spank plugin", "built and registered" if plugin_changed else "up to date", plugin_changed)
    if conf_changed:
        _restart(report, [*(slurmd(n) for n in L.nodes()), slurmctld()])
    elif plugin_changed:
        _restart(report, [slurmd(n) for n in L.nodes()])
    report.step("slurm config", "written" if conf_changed else "up to date", conf_changed)
    _start(slurmctld(), lambda: _ok(["scontrol", "ping"]), report)
    for node in L.nodes():
        if not slurmd(node).pid():
            _clear_tmpfs(node)
            _clear_cgroups(node)
        _start(slurmd(node), lambda node=node: node in _node_states(), report)
    _wait_nodes_idle()
    report.step("nodes", f"{L.node_count()} idle (partitions {L.PARTITION}: n1-n2, {L.SCALE_PARTITION}: all)")

    registry.write_configs()
    for daemon, served in zip(registry.daemons(), registry.REGISTRIES):
        _start(daemon, lambda addr=served.addr: registry.answers(addr), report)
    if images:
        pushed = test_images.push_all(L.log("test-images"))
        pushed += mpi_image.push_mpi_images(Pusher(L.REGISTRY), L.log("test-images"))
        report.step("test images", f"pushed {', '.join(pushed)}" if pushed else "in registry", bool(pushed))
    return report.changed


def status() -> dict:
    """What runs, with pids and log paths; nodes and registries."""
    info = {"daemons": [], "nodes": _node_states() if slurmctld().pid() else {},
            "registries": {s.addr: registry.answers(s.addr) for s in registry.REGISTRIES},
            "site_config": str(L.SITE_FILE), "plugin": str(L.PLUGIN_SO), "logs": str(L.LOG_DIR),
            "test_user": L.TEST_USER, "node_count": L.node_count()}
    for daemon in all_daemons():
        info["daemons"].append({"name": daemon.name, "pid": daemon.pid(), "log": str(daemon.log),
                                "started_by_sandbox": daemon.name in _started()})
    return info


def down(quiet: bool = False) -> list[str]:
    """Stop only the daemons `up` started, newest first."""
    started = set(_started())
    stopped = []
    for daemon in reversed(all_daemons()):
        if daemon.name in started and daemons.stop(daemon):
            stopped.append(daemon.name)
            if not quiet:
                print(f"  {daemon.name:<28} stopped", flush=True)
    L.STATE_FILE.unlink(missing_ok=True)
    return stopped
