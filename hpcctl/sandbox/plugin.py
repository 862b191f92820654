"""Build the SPANK plugin from spank/ against the installed spank.h and register it in plugstack.conf.d."""

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


def plugstack_line() -> str:
    python = Path(sys.executable)
    return f"required {L.PLUGIN_SO} python={python} site={L.SITE_FILE}\n"


def build_and_install(log: Path) -> bool:
    """Build and install the plugin atomically (running slurmstepds keep the old file); True when it changed."""
    with open(log, "a") as out:
        rc = subprocess.run(["make", "-C", str(SPANK_DIR)], stdout=out, stderr=subprocess.STDOUT).returncode
    if rc:
        raise StepFailed("spank plugin", f"make -C {SPANK_DIR} failed", log)
    built = SPANK_DIR / "hpcctl_spank.so"
    changed = not L.PLUGIN_SO.exists() or L.PLUGIN_SO.read_bytes() != built.read_bytes()
    if changed:
        L.PLUGIN_SO.parent.mkdir(parents=True, exist_ok=True)
        tmp = L.PLUGIN_SO.with_name(f".{L.PLUGIN_SO.name}.tmp")
        shutil.copyfile(built, tmp)
        tmp.chmod(0o755)
        tmp.replace(L.PLUGIN_SO)
    return write_if_changed(PLUGSTACK_ENTRY, plugstack_line()) or changed
