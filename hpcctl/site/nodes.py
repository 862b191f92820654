"""The Slurm nodes this host runs, from trusted facts only (slurm.conf and the kernel's host name), and which node's
image cache a command on this host means when the site gives each node its own (cache.root with %n)."""

from __future__ import annotations

import os
import re
import shlex
import socket

from hpcctl.errors import HpcctlError
from hpcctl.site.config import SiteConfig
from hpcctl.slurm.hostlist import expand

NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def nodes_on_host(slurm_conf: str, host: str) -> list[str]:
    """Names of slurm.conf's nodes whose NodeHostname (default: the node name) is ``host`` (short names)."""
    short = host.split(".")[0]
    found: list[str] = []
    for line in slurm_conf.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.lower().startswith("nodename="):
            continue
        try:
            fields = {k.lower(): v for k, _, v in (item.partition("=") for item in shlex.split(line))}
        except ValueError:
            continue
        names = expand(fields["nodename"])
        if names == ["DEFAULT"]:
            continue
        hosts = expand(fields["nodehostname"]) if "nodehostname" in fields else names
        if len(hosts) == 1:
            hosts *= len(names)
        found += [name for name, name_host in zip(names, hosts) if name_host.split(".")[0] == short]
    return found


def slurm_conf_text(config_dir: str) -> str:
    try:
        with open(os.path.join(config_dir, "slurm.conf")) as fh:
            return fh.read()
    except OSError:
        return ""


def local_nodes(site: SiteConfig, host: str | None = None) -> list[str]:
    """The nodes slurm.conf puts on this host; else the host's short name (a host slurm.conf does not list)."""
    host = host or socket.gethostname()
    found = nodes_on_host(slurm_conf_text(site.slurm.config_dir), host)
    short = host.split(".")[0]
    return found or ([short] if NODE_NAME.fullmatch(short) else [])


def cache_node(site: SiteConfig, flag: str | None) -> str | None:
    """The node whose cache a command on this host uses: None where the site has one cache per host; else --node
    (one of this host's nodes), or the host's only node. Several nodes and no --node: a one-line error naming
    them."""
    if not site.cache.per_node:
        return None
    choices = local_nodes(site)
    if flag is not None:
        if flag not in choices:
            raise HpcctlError(f"--node {flag}: not a Slurm node of this host",
                              f"name one of: {', '.join(choices) or '(slurm.conf lists none here)'}")
        return flag
    if len(choices) == 1:
        return choices[0]
    if not choices:
        raise HpcctlError(f"cannot tell which Slurm node this host is for the per-node cache {site.cache.root}",
                          f"pass --node NAME, or list this host in {site.slurm.config_dir}/slurm.conf")
    raise HpcctlError(f"this host runs {len(choices)} Slurm nodes, each with its own image cache "
                      f"({site.cache.root}): say which", f"add --node NAME, one of: {', '.join(choices)}")
