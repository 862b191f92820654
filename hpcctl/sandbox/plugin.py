"""Build the SPANK plugin from spank/ against the installed spank.h and register it in plugstack.conf.d; install
hpcctl-exec, the plan executor of `hpcctl run`, beside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from hpcctl.resources import data_dir
from hpcctl.sandbox import layout as L
from hpcctl.sandbox.daemons import StepFailed
from hpcctl.sandbox.slurm_conf import write_if_changed

SPANK_DIR = data_dir("spank")
PLUGSTACK_ENTRY = L.SLURM_ETC / "plugstack.conf.d" / "hpcctl.conf"
EXEC_BIN = L.PLUGIN_SO.with_name("hpcctl-exec")  # where the site configs' plugin.exec points


def plugstack_line() -> str:
    python = Path(sys.executable)
    return f"required {L.PLUGIN_SO} python={python} site={L.SITE_FILE}\n"


def _install(built: Path, dest: Path) -> bool:
    """Copy ``built`` over ``dest`` atomically (running processes keep the old file); True when it changed."""
    changed = not dest.exists() or dest.read_bytes() != built.read_bytes()
    if changed:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(built, tmp)
        tmp.chmod(0o755)
        tmp.replace(dest)
    return changed


def build_and_install(log: Path) -> bool:
    """Build and install the plugin and hpcctl-exec (`hpcctl run`); True when the plugin or its registration
    changed (slurmd must restart), not for hpcctl-exec alone."""
    with open(log, "a") as out:
        rc = subprocess.run(["make", "-C", str(SPANK_DIR)], stdout=out, stderr=subprocess.STDOUT).returncode
    if rc:
        raise StepFailed("spank plugin", f"make -C {SPANK_DIR} failed", log)
    _install(SPANK_DIR / "hpcctl-exec", EXEC_BIN)
    changed = _install(SPANK_DIR / "hpcctl_spank.so", L.PLUGIN_SO)
    return write_if_changed(PLUGSTACK_ENTRY, plugstack_line()) or changed
