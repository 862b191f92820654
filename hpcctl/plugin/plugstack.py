"""plugstack.conf arguments that set the site's plugin defaults on a node (pyxis' names where pyxis has one):

    required /usr/local/lib/hpcctl/hpcctl_spank.so site=/etc/hpcctl/site.yaml execute_entrypoint=1 mount_home=0

They win over the site config's ``plugin:`` section; the user's --container-* options win over both.
"""

from __future__ import annotations

import dataclasses

from hpcctl.errors import HpcctlError
from hpcctl.site.config import SiteConfig

FLAGS = {"execute_entrypoint": "entrypoint", "mount_home": "mount_home", "writable": "writable"}
PATHS = {"runtime_path": "runtime_dir"}
KEYS = (*FLAGS, *PATHS)


def apply(site: SiteConfig, arguments: list[str]) -> SiteConfig:
    """``site`` with the plugstack.conf arguments (KEY=VALUE) applied to its plugin defaults."""
    changes: dict = {}
    for argument in arguments:
        key, _, value = argument.partition("=")
        if key in FLAGS and value in ("0", "1"):
            changes[FLAGS[key]] = value == "1"
        elif key in PATHS and value.startswith("/"):
            changes[PATHS[key]] = value
        else:
            raise HpcctlError(f"plugstack.conf argument '{argument}' is not valid",
                              f"write {' or '.join(f'{k}=0|1' for k in FLAGS)}, or runtime_path=/ABSOLUTE/PATH")
    return dataclasses.replace(site, plugin=dataclasses.replace(site.plugin, **changes)) if changes else site
