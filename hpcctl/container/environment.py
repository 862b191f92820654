"""The container's environment: image ENV, then the site's rules, then the user's --container-env.

The task starts from the job's environment; these operations change it in order. As in pyxis, the host's locale
(LANG, LANGUAGE, LC_ALL: pyxis' container_deny_env) is dropped first, so the image's applies. Slurm's own variables
(SLURM_*, PMI*, PMIX*, CUDA_VISIBLE_DEVICES) always survive, and names the user lists in --container-env keep
their host values (the plugin lists only the names the host has: the others keep the image's value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from hpcctl.container.plan import EnvOp
from hpcctl.site.config import EnvRules

PROTECTED_PATTERNS = ("SLURM_*", "SLURMD_*", "PMI*", "PMIX*", "OMPI_MCA_orte_*", "CUDA_VISIBLE_DEVICES")  # as globs
PROTECTED = re.compile("|".join(p.replace("*", ".*") for p in PROTECTED_PATTERNS))
LOCALE_WHY = "the host's locale, as pyxis drops it"
HOST_LOCALE = ("LANG", "LANGUAGE", "LC_ALL")


def image_env(config: Mapping | None) -> dict[str, str]:
    """An OCI image config's Env list ('K=V') as a dict."""
    out: dict[str, str] = {}
    for item in (config or {}).get("Env") or ():
        name, sep, value = item.partition("=")
        if sep and name:
            out[name] = value
    return out


def compose(image: Mapping[str, str], site: EnvRules, keep: Iterable[str], extra: Iterable[EnvOp] = ()) -> list[EnvOp]:
    """Operations in order; ``keep``: --container-env names; ``extra``: injections (GPU, MPI) after the site's."""
    keep = set(keep)

    def allowed(name: str) -> bool:
        return name not in keep and not PROTECTED.fullmatch(name)

    ops = [EnvOp("unset", n, "", LOCALE_WHY) for n in HOST_LOCALE if n not in keep]
    ops += [EnvOp("set", n, v, "image ENV") for n, v in image.items() if allowed(n)]
    ops += [EnvOp("set", n, v, "site environment.set") for n, v in site.set.items() if n not in keep]
    ops += [EnvOp("prepend", n, v, "site environment.prepend") for n, v in site.prepend.items() if n not in keep]
    ops += [EnvOp("append", n, v, "site environment.append") for n, v in site.append.items() if n not in keep]
    ops += [EnvOp("unset", n, "", "site environment.unset") for n in site.unset if n not in keep]
    ops += [op for op in extra if op.name not in keep]
    ops.append(EnvOp("set", "HPCCTL_IN_CONTAINER", "1", "tells hpcctl's srun inside the container where it is"))
    return ops
