"""`hpcctl image inspect`: format, digest, size, architecture, environment, entrypoint or runscript, labels."""

from __future__ import annotations

import argparse
import os

from hpcctl.cli.output import print_json

INSPECT_HELP = """\
Show what an image is and what it runs: its format (sif, squashfs, or oci for an image pulled from a registry),
digest (sha256 of the file, or the manifest digest of a cached image), size, architecture, environment,
entrypoint and CMD, or for a Singularity/Apptainer image its /.singularity.d/env scripts (in the order they are
sourced), runscript and labels.

REF|FILE is a path starting with / or . (a .sif or a squashfs file, read with your rights), or a reference of an
image already in this node's cache (as `hpcctl image ls` shows it, or a digest prefix of at least 12 digits):
inspect never pulls, so run `hpcctl image pull REF` first.

A .sif is checked as a job would use it: the primary system partition must be a squashfs built for this node's
architecture; otherwise inspect shows the header and the reason a job would refuse it. Signatures in a .sif are
listed, never verified.

examples:
  hpcctl image inspect ./pytorch.sif
  hpcctl image inspect --json /shared/images/app.sqsh
  hpcctl image inspect 127.0.0.1:5000/hpcctl/busybox:latest"""


def register_actions(sub) -> None:
    inspect = sub.add_parser("inspect", help="show an image's format, digest, architecture, env, entrypoint or "
                                             "runscript, and labels", description=INSPECT_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    inspect.add_argument("reference", metavar="REF|FILE", help="a .sif or squashfs file (starting with / or .), or "
                                                               "a cached image's reference or digest")
    inspect.add_argument("--json", action="store_true", help="print everything as JSON (env scripts in full)")
    inspect.add_argument("--node", metavar="NAME", help="the node whose cache to look in (a cache per node)")
    inspect.set_defaults(func=_inspect)


def _who():
    from hpcctl.container.access import Identity
    return Identity(os.getuid(), os.getgid(), tuple(os.getgroups()))


def _inspect(args: argparse.Namespace) -> int:
    from hpcctl.container import inspect
    from hpcctl.container.options import is_file_reference
    from hpcctl.site import select

    site = select.load(args.site)
    scratch = os.path.join(site.plugin.runtime_dir, "inspect")
    if is_file_reference(args.reference):
        found = inspect.inspect_file(os.path.abspath(args.reference), _who(), scratch)
    else:
        cache, entry = _cached(site, args)
        found = inspect.inspect_cached(cache.as_image(entry), entry.meta, _who(), scratch)
    if args.json:
        print_json(found.to_dict())
    else:
        _print(found)
    return 0


def _cached(site, args):
    from hpcctl.errors import HpcctlError
    from hpcctl.image import api
    from hpcctl.image.reference import ImageRef, parse
    from hpcctl.site.nodes import cache_node

    wanted = args.reference
    parsed = parse(wanted, site.registries.default)
    names = {wanted, str(parsed), parsed.canonical} if isinstance(parsed, ImageRef) else {wanted}
    bare = wanted.removeprefix("sha256:")

    def matches(entry) -> bool:
        reference = entry.meta["reference"]
        return (reference in names or reference.split("@", 1)[0] in names or (len(bare) >= 12 and
                entry.key.startswith(bare)) or (isinstance(parsed, ImageRef) and parsed.digest == entry.digest))

    found = [(entry.last_used, cache, entry) for cache in api.caches(site, cache_node(site, args.node))
             for entry in cache.entries() if matches(entry)]
    if found:  # the most recently used, as a tag's newest pull is
        _, cache, entry = max(found, key=lambda item: item[0])
        return cache, entry
    raise HpcctlError(f"{wanted} is not in this node's image cache (inspect never pulls)",
                      f"pull it first: hpcctl image pull {wanted}; or pass a .sif/squashfs file as ./FILE")


def _print(found) -> None:
    from hpcctl.image.progress import human

    rows = [("format", found.format), ("reference", found.reference), ("path", found.path),
            ("size", human(found.size)), ("digest", found.digest), ("architecture", found.architecture)]
    facts = found.sif
    if facts:
        part = facts["partition"]
        rows += [("sif id", facts["id"] or "-"),
                 ("partition", f"squashfs at byte {part['offset']}, {human(part['size'])}" if part else "-"),
                 ("signatures", f"{facts['signatures']} (not verified)" if facts["signatures"] else "none"),
                 ("runs here", "yes" if facts["runnable"] else f"no: {facts['refusal']}")]
    if found.env:
        rows.append(("env", "\n".join(found.env)))
    if found.entrypoint is not None:
        rows.append(("entrypoint", " ".join(found.entrypoint)))
    if found.cmd is not None:
        rows.append(("cmd", " ".join(found.cmd)))
    if found.env_scripts:
        rows.append(("env scripts", "\n".join(s["name"] for s in found.env_scripts)))
    if found.runscript:
        rows.append(("runscript", found.runscript.rstrip("\n")))
    if found.labels:
        rows.append(("labels", "\n".join(f"{k}: {v}" for k, v in found.labels.items())))
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        lines = str(value).splitlines() or [""]
        print(f"{name + ':':<{width}}{lines[0]}")
        for line in lines[1:]:
            print(" " * width + line)
