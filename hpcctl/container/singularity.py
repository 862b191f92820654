"""Singularity/Apptainer run-time semantics for a .sif image, as Apptainer's ``exec`` and ``run`` give them.

Apptainer sources ``/.singularity.d/env/*.sh`` in glob (lexical, so numeric-prefix) order in the image's own
``/bin/sh`` and then runs the command (``exec``) or ``/.singularity.d/runscript`` with the arguments (``run``). Here
that shell is the container's entrypoint, so the plugin's entrypoint machinery (spank/ctx_remote.c: run once per
node and step, every task takes the environment it left) applies it with no C of its own. The site's rules and the
step's injections are applied again after the scripts, so they stay on top; the user's --container-env names keep
their host values (the machinery never overrides them), and Slurm's variables are never taken from the scripts.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from hpcctl.container.environment import PROTECTED_PATTERNS
from hpcctl.container.plan import EnvOp

ENV_DIR = "/.singularity.d/env"
RUNSCRIPT = "/.singularity.d/runscript"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Apptainer's: the host's is not passed
LABELS = "/.singularity.d/labels.json"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _statement(op: EnvOp) -> str | None:
    if not _NAME.fullmatch(op.name):
        return None
    value = shlex.quote(op.value)
    if op.op == "unset":
        return f"unset {op.name}"
    if op.op == "prepend":
        return f'export {op.name}={value}"${{{op.name}:+:${op.name}}}"'
    if op.op == "append":
        return f'export {op.name}="${{{op.name}:+${op.name}:}}"{value}'
    return f"export {op.name}={value}"


def _present(patterns: Iterable[str]) -> str:
    """Shell words: the names of the variables set now that match ``patterns`` (globs), valid names only."""
    return (f"$(env 2>/dev/null | while IFS='=' read -r n _; do case \"$n\" in *[!A-Za-z0-9_]*) ;; "
            f"{'|'.join(patterns)}) echo \"$n\";; esac; done)")


def entrypoint(after: Iterable[EnvOp], runscript: bool, keep: Iterable[str] = ()) -> list[str]:
    """The shell that sets Apptainer's default PATH, sources the image's environment scripts, puts Slurm's
    variables and the ``keep`` names (--container-env) back as they were before them, re-applies ``after`` (the
    site's and injections' operations), then runs its arguments (``runscript``: through the image's runscript, as
    ``apptainer run`` does). A ``keep`` name that was not set keeps what the scripts give it."""
    kept = [*PROTECTED_PATTERNS, *(n for n in keep if _NAME.fullmatch(n))]
    lines = [f"hpcctl_kept={_present(kept)}",
             'for n in $hpcctl_kept; do eval "hpcctl_saved_$n=\\${$n}"; done',
             f"export PATH={DEFAULT_PATH}",
             f'for script in {ENV_DIR}/*.sh; do if [ -f "$script" ]; then . "$script"; fi; done',
             f'for n in {_present(PROTECTED_PATTERNS)}; do unset "$n"; done',
             'for n in $hpcctl_kept; do eval "export $n=\\"\\${hpcctl_saved_$n}\\""; unset "hpcctl_saved_$n"; done',
             "unset script n hpcctl_kept",
             *filter(None, map(_statement, after)),
             f'exec {RUNSCRIPT} "$@"' if runscript else 'exec "$@"']
    return ["/bin/sh", "-c", "\n".join(lines), "hpcctl-sif"]


def apptainer_env(path: str) -> list[EnvOp]:
    """The variables Apptainer sets for the scripts and the command to see which image they run in."""
    name = path.rsplit("/", 1)[-1]
    why = "as Apptainer sets it for a .sif"
    return [EnvOp("set", var, value, why) for var, value in (("APPTAINER_CONTAINER", path), ("APPTAINER_NAME", name),
                                                             ("SINGULARITY_CONTAINER", path),
                                                             ("SINGULARITY_NAME", name))]
