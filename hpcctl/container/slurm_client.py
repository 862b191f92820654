"""Slurm's commands inside the container (srun, sbatch, squeue, ...), so a job script that runs in an image can start
steps and query the queue; the site mounts bring Slurm's config and the munge socket.

The host's binaries run with the host's own loader and libraries, so they work in any image that has /bin/sh,
whatever its libc: once per node (and Slurm build) the binaries, their libraries and those of Slurm's plugins are
copied into a root-owned directory under the plugin's runtime directory, with one small wrapper per command, e.g.

    exec /usr/lib/hpcctl-slurm/lib/ld-linux-x86-64.so.2 --argv0 srun --library-path /usr/lib/hpcctl-slurm/lib \
        /usr/lib/hpcctl-slurm/libexec/srun "$@"

Slurm's plugin directory and the directories of plugstack.conf's SPANK plugins are bound at their host paths,
because slurm.conf and plugstack.conf name them so."""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from hpcctl.container.plan import PlanMount

COMMANDS = ("srun", "sbatch", "salloc", "squeue", "scontrol", "scancel", "sinfo", "sacct", "sstat", "sattach",
            "sbcast")
TARGET = "/usr/lib/hpcctl-slurm"  # where the prepared directory appears in the container
BIN_DIR = "/usr/local/bin"  # where the wrappers appear: on the PATH of nearly every image
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_LDD_LINE = re.compile(r"^\s*(?:(\S+) => )?(/\S+) \(0x[0-9a-f]+\)$")


def _setting(path: str, key: str) -> str | None:
    """A Key=Value setting of slurm.conf (the first; case-insensitive keys, as Slurm reads them)."""
    try:
        with open(path) as fh:
            for line in fh:
                name, sep, value = line.split("#", 1)[0].strip().partition("=")
                if sep and name.strip().lower() == key.lower():
                    return value.strip().split(":")[0] or None
    except OSError:
        return None
    return None


def spank_plugins(config_dir: str) -> list[str]:
    """Absolute paths of the SPANK plugins plugstack.conf (and its includes) loads."""
    found: list[str] = []
    pending = [os.path.join(config_dir, "plugstack.conf")]
    while pending:
        try:
            with open(pending.pop(0)) as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and words[0] == "include":
                pattern = words[1] if words[1].startswith("/") else os.path.join(config_dir, words[1])
                pending += sorted(glob.glob(pattern))
            elif len(words) >= 2 and words[0] in ("required", "optional") and words[1].startswith("/"):
                found.append(words[1])
    return found


def _libraries(files: list[str]) -> tuple[dict[str, str], str | None]:
    """{name the loader looks for: host path} over every file's dependencies, and the loader's path."""
    libs: dict[str, str] = {}
    loader = None
    for path in files:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, env={"PATH": HOST_PATH}).stdout
        for line in out.splitlines():
            match = _LDD_LINE.match(line)
            if not match:
                continue  # linux-vdso, "not found" (an optional plugin the host cannot load either), static
            name, real = match.groups()
            if name is None:
                loader = real
            else:
                libs.setdefault(name, real)
    return libs, loader


def _wrapper(command: str, loader: str) -> str:
    return (f"#!/bin/sh\n# Slurm's {command} from the host, with the host's loader and libraries (hpcctl)\n"
            f"exec {TARGET}/lib/{os.path.basename(loader)} --argv0 {command} --library-path {TARGET}/lib "
            f"{TARGET}/libexec/{command} \"$@\"\n")


def _build(directory: str, commands: dict[str, str], plugins: list[str]) -> None:
    libs, loader = _libraries([*commands.values(), *plugins])
    if loader is None:
        return
    parent = os.path.dirname(directory)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=parent)
    for sub in ("bin", "libexec", "lib"):
        os.mkdir(os.path.join(tmp, sub), 0o755)
    for command, path in commands.items():
        shutil.copy(path, os.path.join(tmp, "libexec", command))
        wrapper = os.path.join(tmp, "bin", command)
        with open(wrapper, "w") as fh:
            fh.write(_wrapper(command, loader))
        os.chmod(wrapper, 0o755)
    for name, path in {**libs, os.path.basename(loader): loader}.items():
        shutil.copy(path, os.path.join(tmp, "lib", name))
    os.chmod(tmp, 0o755)
    try:
        os.rename(tmp, directory)
    except OSError:  # another node of this host finished the same directory first
        shutil.rmtree(tmp)


def _fingerprint(files: list[str]) -> str:
    digest = hashlib.sha256()
    for path in files:
        st = os.stat(path)
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def mounts(config_dir: str, runtime_dir: str) -> list[PlanMount]:
    """The mounts that put the host's Slurm commands into the container; none when the host has no Slurm client."""
    commands = {c: p for c in COMMANDS if (p := shutil.which(c, path=HOST_PATH))}
    if "srun" not in commands:
        return []
    plugin_dir = _setting(os.path.join(config_dir, "slurm.conf"), "PluginDir")
    if plugin_dir is None:
        libs, _ = _libraries([commands["srun"]])
        plugin_dir = os.path.dirname(libs.get("libslurmfull.so", "")) or None
    spank = spank_plugins(config_dir)
    plugins = sorted(glob.glob(os.path.join(plugin_dir, "*.so"))) if plugin_dir else []
    plugins += [p for p in spank if os.path.exists(p)]
    directory = os.path.join(runtime_dir, "slurm-client", _fingerprint([*commands.values(), *plugins]))
    if not os.path.isdir(directory):
        try:
            _build(directory, commands, plugins)
        except OSError:
            return []  # not root (hpcctl run by a user) and not prepared yet: the container goes without them
        if not os.path.isdir(directory):
            return []
    why = "Slurm's commands, so job scripts in the container can run srun, sbatch, squeue ..."
    result = [PlanMount(directory, TARGET, readonly=True, create="dir", why=why)]
    result += [PlanMount(d, d, readonly=True, create="dir", why="Slurm's plugins, which its commands load")
               for d in sorted({plugin_dir, *(os.path.dirname(p) for p in spank)} - {None})]
    result += [PlanMount(os.path.join(directory, "bin", c), os.path.join(BIN_DIR, c), readonly=True, create="file",
                         why=why) for c in commands]
    return result
