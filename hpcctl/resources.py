"""Where the project's data directories (templates/, site-configs/, spank/) are: beside the package in a checkout
or an editable install, under <prefix>/share/hpcctl after `pip install .` (setup.py's data_files)."""

from __future__ import annotations

import sys
from pathlib import Path


def data_dir(name: str) -> Path:
    checkout = Path(__file__).resolve().parents[1] / name
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "hpcctl" / name
