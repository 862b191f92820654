"""Container Device Interface specs (e.g. from `nvidia-ctk cdi generate`): the host's own word on what a GPU needs.

A spec lists devices by name ("0", "1", a UUID, "all") with container edits (device nodes, mounts, env, hooks) plus
edits common to all of them. Hooks are programs this runtime does not run: `update-ldcache` becomes a rebuild of
the container's linker cache, others are reported in the plan's notes.
"""

from __future__ import annotations

import yaml

from hpcctl.container.inject.injection import Injection
from hpcctl.container.plan import EnvOp, PlanMount
from hpcctl.errors import HpcctlError


def load(path: str) -> dict:
    try:
        with open(path) as fh:
            spec = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise HpcctlError(f"cannot read CDI spec {path}: {exc}",
                          "regenerate it (nvidia-ctk cdi generate) or remove gpu.cdi_spec from the site config")
    if not isinstance(spec, dict) or "kind" not in spec or not isinstance(spec.get("devices"), list):
        raise HpcctlError(f"{path} is not a CDI spec (no kind or devices)",
                          "regenerate it (nvidia-ctk cdi generate) or remove gpu.cdi_spec from the site config")
    return spec


def _apply(edits: dict, out: Injection, why: str) -> None:
    for node in edits.get("deviceNodes") or ():
        host = node.get("hostPath") or node["path"]
        out.mounts.append(PlanMount(host, node["path"], kind="dev", readonly=False, create="file", why=why))
    for mount in edits.get("mounts") or ():
        options = mount.get("options") or ()
        out.mounts.append(PlanMount(mount["hostPath"], mount["containerPath"], readonly="rw" not in options,
                                    why=why))
    for item in edits.get("env") or ():
        name, _, value = item.partition("=")
        out.env.append(EnvOp("set", name, value, why))
    for hook in edits.get("hooks") or ():
        args = hook.get("args") or [hook.get("path", "")]
        if "update-ldcache" in args:
            out.ldconfig = True
        else:
            out.notes.append(f"CDI hook not run: {' '.join(args)}")


def edits_for(path: str, names: list[str]) -> Injection:
    """The edits for devices ``names`` of the spec at ``path``: the common edits first, then each device's."""
    spec = load(path)
    devices = {str(d.get("name")): d for d in spec["devices"]}
    missing = [n for n in names if n not in devices]
    if missing:
        raise HpcctlError(f"CDI spec {path} has no device {', '.join(missing)} (it has: {', '.join(devices)})",
                          "regenerate the spec on this node with nvidia-ctk cdi generate")
    out = Injection()
    _apply(spec.get("containerEdits") or {}, out, f"CDI {spec['kind']}: common edits")
    for name in names:
        _apply(devices[name].get("containerEdits") or {}, out, f"CDI {spec['kind']}={name}: allocated GPU")
    return out
