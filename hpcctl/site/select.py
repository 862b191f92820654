"""Which site config applies, the one policy every command uses (`hpcctl submit`, `image`, `run`, `site`), and the
user settings it reads, each value with where it came from (for `hpcctl config show`). The SPANK plugin does not
use it: on a node, root loads only the site config plugstack.conf names.

Files, later ones winning: $XDG_CONFIG_DIRS/hpcctl/config.yaml (default /etc/xdg), then
$XDG_CONFIG_HOME/hpcctl/config.yaml (default ~/.config). Keys: `site`, and `defaults` for resources a spec leaves
out (partition, account, qos, time). The site is chosen by --site, else $HPCCTL_SITE, else the user files, else
/etc/hpcctl/site.yaml, else the site config named after Slurm's ClusterName.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from hpcctl.errors import ConfigError, HpcctlError
from hpcctl.schema.validate import Located, Problem, load_yaml_file, path_text, strings, unprintable, validate
from hpcctl.site import config as site_config
from hpcctl.site.config import SiteConfig, load_site

DEFAULT_KEYS = ("partition", "account", "qos", "time")
CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "site": {"type": "string", "minLength": 1, "description": "site name or site config file"},
        "defaults": {"type": "object", "additionalProperties": False,
                     "properties": {key: {"type": "string", "minLength": 1} for key in DEFAULT_KEYS}},
    },
}


@dataclass(frozen=True)
class Setting:
    value: str
    origin: str


def config_files() -> list[Path]:
    """Lowest priority first."""
    dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [Path(d) / "hpcctl" / "config.yaml" for d in reversed(dirs.split(":")) if d] + \
        [Path(home) / "hpcctl" / "config.yaml"]


def user_settings() -> dict[str, Setting]:
    settings: dict[str, Setting] = {}
    for path in config_files():
        if not path.is_file():
            continue
        doc = load_yaml_file(str(path))
        if doc.data is None:
            continue
        _check(doc)
        if "site" in doc.data:
            settings["site"] = Setting(doc.data["site"], f"{path}:{doc.line(('site',))}")
        for key, value in (doc.data.get("defaults") or {}).items():
            settings[f"defaults.{key}"] = Setting(value, f"{path}:{doc.line(('defaults', key))}")
    return settings


def _check(doc: Located) -> None:
    """Schema problems, and values that would break the #SBATCH lines they end up in, all at once."""
    problems = validate(doc, CONFIG_SCHEMA)
    for path, text in strings(doc.data):
        found = unprintable(text)
        if found:
            problems.append(Problem(doc.file, doc.line(path), path_text(path), "contains {} ({})".format(*found)))
    if problems:
        raise ConfigError([str(p) for p in sorted(problems, key=lambda p: p.line)],
                          "keys: site, defaults.{" + ",".join(DEFAULT_KEYS) + "}")


def slurm_cluster_name() -> tuple[str, str] | None:
    conf = os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf"
    try:
        text = Path(conf).read_text()
    except OSError:
        return None
    match = re.search(r"^\s*ClusterName\s*=\s*(\S+)", text, re.MULTILINE | re.IGNORECASE)
    return (match.group(1), conf) if match else None


def choose_site(flag: str | None, settings: dict[str, Setting]) -> Setting:
    """The site name or file to load, and why."""
    if flag:
        return Setting(flag, "command line --site")
    if os.environ.get("HPCCTL_SITE"):
        return Setting(os.environ["HPCCTL_SITE"], "environment HPCCTL_SITE")
    if "site" in settings:
        return settings["site"]
    if site_config.SYSTEM_SITE_FILE.exists():
        return Setting(str(site_config.SYSTEM_SITE_FILE), "system default")
    cluster = slurm_cluster_name()
    if cluster:
        return Setting(cluster[0], f"ClusterName in {cluster[1]}")
    raise HpcctlError("no site config found", "pass --site NAME|FILE, set HPCCTL_SITE, or add `site:` to "
                      f"{config_files()[-1]}")


def effective(flag: str | None) -> dict[str, Setting]:
    """Every setting a command uses: the chosen site and its file, and the resource defaults."""
    settings = user_settings()
    site = choose_site(flag, settings)
    return {**settings, "site": site,
            "site_file": Setting(str(site_config.find_site_file(site.value)), f"site '{site.value}'")}


def select(flag: str | None) -> Path:
    """The site config file for ``flag`` (--site NAME|FILE or None), by the policy above."""
    return Path(effective(flag)["site_file"].value)


def load(flag: str | None) -> SiteConfig:
    return load_site(select(flag))


def resource_defaults(settings: dict[str, Setting]) -> dict:
    return {key.split(".", 1)[1]: s.value for key, s in settings.items() if key.startswith("defaults.")}
