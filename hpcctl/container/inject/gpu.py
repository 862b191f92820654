"""GPU injection: the host driver's libraries and utilities, only the step's GPUs, and the container's view of them.

Like Apptainer's --nv, libraries come from the host's ``ldconfig -p`` matched against the site's list; unlike it,
a library whose file carries a different driver version than the running driver is left out (stale files from an
older driver), only the allocated /dev/nvidiaN are bound, and CUDA_VISIBLE_DEVICES is renumbered for the container
as Sarus does (host 3,1,5 -> 1,0,2). A CDI spec on the host replaces the list.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping

from hpcctl.container.inject import cdi, gres
from hpcctl.container.inject.injection import Injection
from hpcctl.container.inject.layout import BINDIR, HOST_PATH, LIBDIR
from hpcctl.container.inject.step import StepInfo
from hpcctl.container.plan import EnvOp, PlanMount
from hpcctl.errors import HpcctlError
from hpcctl.host import ldcache
from hpcctl.site.config import SiteConfig

DRIVER_VERSION_FILE = "/proc/driver/nvidia/version"
NVIDIA_MAJOR = 195
# Variables NVIDIA's images set for the container toolkit; meaningless, and misleading, without a GPU.
NVIDIA_IMAGE_ENV = ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_REQUIRE_CUDA",
                    "NVIDIA_DISABLE_REQUIRE", "NVIDIA_REQUIRE_DRIVER", "NVIDIA_MIG_CONFIG_DEVICES",
                    "NVIDIA_MIG_MONITOR_DEVICES", "NVIDIA_PRODUCT_NAME", "NVIDIA_CUDA_END_OF_LIFE")
_DRIVER_STYLE = re.compile(r"^\d{3,}\.\d+(\.\d+)?$")


def remap(gpus: tuple[int, ...]) -> str:
    """The container's CUDA_VISIBLE_DEVICES: each host index replaced by its rank among the allocated ones."""
    order = sorted(gpus)
    return ",".join(str(order.index(g)) for g in gpus)


def find_binary(name: str) -> str | None:
    if name.startswith("/"):
        return name if os.path.exists(name) else None
    return shutil.which(name, path=HOST_PATH)


def driver_version(site: SiteConfig) -> str | None:
    """The loaded driver's version: the kernel module's, else what the site's nvidia-smi reports."""
    try:
        with open(DRIVER_VERSION_FILE) as fh:
            match = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", fh.read())
            if match:
                return match.group(1)
    except OSError:
        pass
    smi = next((p for p in map(find_binary, site.gpu.binaries) if p and p.endswith("/nvidia-smi")), None)
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=False).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out[0] if out and _DRIVER_STYLE.match(out[0]) else None


def device_files(site: SiteConfig, node: str, gpus: tuple[int, ...]) -> list[str]:
    """Host device files of ``node``'s GPUs with these GRES indices, in that order."""
    if site.gpu.gres_conf:
        try:
            with open(site.gpu.gres_conf) as fh:
                files = gres.gpu_files(fh.read(), node)
        except OSError as exc:
            raise HpcctlError(f"cannot read gpu.gres_conf {site.gpu.gres_conf}: {exc.strerror}",
                              f"fix gpu.gres_conf in {site.path}")
        bad = [i for i in gpus if i >= len(files)]
        if bad:
            raise HpcctlError(f"GPU index {bad[0]} of node {node} is not in {site.gpu.gres_conf} "
                              f"({len(files)} GPU file(s) for this node)",
                              "make gres.conf list a File= for every GPU of the node")
        return [files[i] for i in gpus]
    return [site.gpu.device_pattern.format(index=i) for i in gpus]


def _device_target(path: str) -> str:
    """GPU nodes appear as /dev/nvidia<minor>, the name NVIDIA's libraries open; other devices keep their path."""
    st = os.stat(path)
    if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == NVIDIA_MAJOR:
        return f"/dev/nvidia{os.minor(st.st_rdev)}"
    return path


def _devices(site: SiteConfig, step: StepInfo, out: Injection) -> None:
    for index, path in zip(step.gpus, device_files(site, step.node, step.gpus)):
        if not os.path.exists(path):
            raise HpcctlError(f"GPU {index} of node {step.node}: device {path} does not exist",
                              f"check gpu.device_pattern / gpu.gres_conf in {site.path} (hpcctl site check)")
        out.mounts.append(PlanMount(path, _device_target(path), kind="dev", readonly=False, create="file",
                                    why=f"allocated GPU {index} (Slurm GRES index on {step.node})"))
    for path in site.gpu.control_devices:
        if os.path.exists(path):
            out.mounts.append(PlanMount(path, path, kind="dev", readonly=False, create="file",
                                        why="GPU control device"))
        else:
            out.notes.append(f"control device {path} not on this node; skipped")


def _libraries(site: SiteConfig, out: Injection) -> None:
    version = driver_version(site)
    if version is None:
        out.notes.append("driver version unknown (no /proc/driver/nvidia/version, no nvidia-smi): "
                         "libraries not checked against it")
    targets: set[str] = set()
    for prefix in site.gpu.driver_libraries:
        hits = ldcache.find(prefix, site.gpu.ldconfig)
        if any(h.is_64bit for h in hits):
            hits = [h for h in hits if h.is_64bit]
        if not hits:
            out.notes.append(f"driver library {prefix} not in the host's ldconfig -p; skipped")
        for hit in hits:
            real = os.path.realpath(hit.path)
            built_for = real.rsplit(".so.", 1)[-1] if ".so." in real else ""
            if version and _DRIVER_STYLE.match(built_for) and built_for != version:
                note = f"{real} is from driver {built_for}, not the running {version}; skipped"
                if note not in out.notes:
                    out.notes.append(note)
                continue
            target = f"{LIBDIR}/{hit.name}"
            if target in targets:
                continue
            targets.add(target)
            out.mounts.append(PlanMount(real, target, create="file",
                                        why=f"GPU driver library {hit.name} (gpu.driver_libraries: {prefix})"))
            out.ldconfig = True


def _binaries(site: SiteConfig, out: Injection) -> None:
    for name in site.gpu.binaries:
        path = find_binary(name)
        if path:
            out.mounts.append(PlanMount(os.path.realpath(path), f"{BINDIR}/{os.path.basename(name)}",
                                        create="file", why="GPU driver utility (gpu.binaries)"))
        else:
            out.notes.append(f"GPU utility {name} not found on this node; skipped")


def plan(site: SiteConfig, step: StepInfo, image_env: Mapping[str, str] | None = None) -> Injection:
    """``image_env``: the image's ENV; None when unknown, then every variable NVIDIA's images set is dropped."""
    out = Injection()
    if not step.gpus:
        names = NVIDIA_IMAGE_ENV if image_env is None else sorted(k for k in image_env if k.startswith("NVIDIA_"))
        out.env += [EnvOp("unset", n, why="no GPU allocated: drop the image's NVIDIA settings") for n in names]
        return out
    if site.gpu.cdi_spec and os.path.exists(site.gpu.cdi_spec):
        out.add(cdi.edits_for(site.gpu.cdi_spec, [str(i) for i in step.gpus]))
    else:
        if site.gpu.cdi_spec:
            out.notes.append(f"CDI spec {site.gpu.cdi_spec} not on this node; using gpu.driver_libraries")
        _devices(site, step, out)
        _libraries(site, out)
        _binaries(site, out)
    visible = remap(step.gpus)
    why = f"host GPUs {','.join(map(str, step.gpus))} renumbered as the container sees them"
    out.env += [EnvOp("set", "CUDA_VISIBLE_DEVICES", visible, why), EnvOp("set", "GPU_DEVICE_ORDINAL", visible, why)]
    if any(m.target.startswith(LIBDIR + "/") for m in out.mounts):
        out.env.append(EnvOp("prepend", "LD_LIBRARY_PATH", LIBDIR, "host driver libraries come first"))
    return out
