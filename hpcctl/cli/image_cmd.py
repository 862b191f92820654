"""`hpcctl image pull|resolve|ls|rm|gc`: the node's image cache from the command line."""

from __future__ import annotations

import argparse
import datetime
import os
import sys

from hpcctl.cli import image_build_cmd, image_inspect_cmd
from hpcctl.cli.output import print_json, print_table

NODE_HELP = "the Slurm node whose cache to use, where cache.root is per node (%%n) and this host runs several"


def register(subparsers) -> None:
    image = subparsers.add_parser("image", help="pull images into the node cache, list and remove them",
                                  description="Images are pulled once per node into a squashfs cache that all jobs "
                                              "share; see the site config's cache section.")
    sub = image.add_subparsers(dest="image_command", metavar="ACTION")
    sub.required = True

    pull = sub.add_parser("pull", help="pull and convert an image (no-op when it is cached)")
    pull.add_argument("reference", help="e.g. ubuntu:22.04, nvcr.io#nvidia/pytorch:23.12, ./img.sqsh")
    pull.add_argument("--uid", type=int, help="(root) use this user's registry credentials")
    pull.add_argument("--json", action="store_true", help="print the result as JSON, no progress")
    pull.add_argument("--node", metavar="NAME", help=NODE_HELP)
    pull.set_defaults(func=_pull)

    resolve = sub.add_parser("resolve", help="print the reference pinned to its current digest")
    resolve.add_argument("reference")
    resolve.add_argument("--uid", type=int, help="(root) use this user's registry credentials")
    resolve.add_argument("--json", action="store_true")
    resolve.set_defaults(func=_resolve)

    ls = sub.add_parser("ls", help="list cached images")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--node", metavar="NAME", help="list this node's cache only (default: every node of this host)")
    ls.set_defaults(func=_ls)

    rm = sub.add_parser("rm", help="remove cached images (refused while a job uses one)")
    rm.add_argument("images", nargs="+", metavar="REFERENCE|DIGEST", help="a reference as `ls` shows it, or a "
                                                                          "digest (prefix of at least 12 digits)")
    rm.add_argument("--json", action="store_true")
    rm.add_argument("--node", metavar="NAME", help=NODE_HELP)
    rm.set_defaults(func=_rm)

    gc = sub.add_parser("gc", help="remove least recently used images down to the site's low watermark")
    gc.add_argument("--target", metavar="SIZE", help="shrink to this size instead, e.g. 10GiB or 0; as root, also "
                                                     "the shared store (which has no watermarks)")
    gc.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    gc.add_argument("--json", action="store_true")
    gc.add_argument("--node", metavar="NAME", help=NODE_HELP)
    gc.set_defaults(func=_gc)
    image_build_cmd.register_actions(sub)
    image_inspect_cmd.register_actions(sub)


def _site(args):
    from hpcctl.site import select
    return select.load(args.site)


def _image_dict(image) -> dict:
    return {"reference": image.reference, "digest": image.digest, "path": image.path, "size": image.size,
            "config": image.config.to_dict()}


def _pull(args: argparse.Namespace) -> int:
    from hpcctl.image import api
    from hpcctl.image.progress import human
    site = _site(args)
    image = api.ensure(args.reference, site, uid=args.uid, progress=not args.json, node=_node(site, args))
    if args.json:
        print_json(_image_dict(image))
    else:
        print(f"{image.reference}: {image.path} ({human(image.size)})")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    from hpcctl.image import api
    resolved = api.resolve(args.reference, _site(args), uid=args.uid)
    if args.json:
        print_json({"reference": resolved.reference, "digest": resolved.digest, "pinned": resolved.pinned})
    else:
        print(resolved.pinned)
    return 0


def _node(site, args) -> str | None:
    from hpcctl.site.nodes import cache_node
    return cache_node(site, args.node)


def _caches(site, args, every_node: bool = False) -> list:
    """The caches the command acts on: its node's (see _node); for ``every_node`` without --node, every node's of
    this host."""
    from hpcctl.image import api
    from hpcctl.site.nodes import local_nodes
    wanted = local_nodes(site) if every_node and site.cache.per_node and args.node is None else [_node(site, args)]
    found: dict = {}
    for node in wanted:
        for cache in api.caches(site, node):
            found.setdefault(cache.root, cache)  # a user's own cache comes once, not once per node
    return list(found.values())


def _entries(site, args, every_node: bool = False):
    """(cache, entry) of every image the command sees: the node caches (and a user's own), then the shared store."""
    from hpcctl.image import api
    rows = [(cache, entry) for cache in _caches(site, args, every_node) for entry in cache.entries()]
    shared = api.shared_store(site, args.node)
    return rows + [(shared, entry) for entry in shared.entries()] if shared else rows


def _tier(cache) -> str:
    """Which tier a row's cache is: the cluster's shared store, this node's cache, or the user's own cache."""
    from hpcctl.image import api
    from hpcctl.image.shared_store import SharedStore
    if isinstance(cache, SharedStore):
        return "shared"
    return "user" if cache.root == api.user_cache().root else "node"


def _ls(args: argparse.Namespace) -> int:
    from hpcctl.image.progress import human
    site = _site(args)
    rows = _entries(site, args, every_node=True)
    if args.json:
        print_json([{"reference": e.meta["reference"], "digest": e.digest, "size": e.size, "path": str(e.sqsh),
                     "last_used": _iso(e.last_used), "cache": str(c.root), "tier": _tier(c)} for c, e in rows])
        return 0
    if not rows:
        print("no cached images", file=sys.stderr)
        return 0
    if site.cache.per_node:  # a cache per node: say whose
        print_table(["REFERENCE", "DIGEST", "SIZE", "LAST USE", "TIER", "CACHE"],
                    [[e.meta["reference"], e.digest[:19], human(e.size), _iso(e.last_used), _tier(c), str(c.root)]
                     for c, e in rows])
        return 0
    print_table(["REFERENCE", "DIGEST", "SIZE", "LAST USE", "TIER"],
                [[e.meta["reference"], e.digest[:19], human(e.size), _iso(e.last_used), _tier(c)] for c, e in rows])
    return 0


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rm(args: argparse.Namespace) -> int:
    from hpcctl.errors import HpcctlError
    from hpcctl.image import gc
    rows = _entries(_site(args), args)
    removed = []
    for wanted in args.images:
        bare = wanted.removeprefix("sha256:")
        matches = [(c, e) for c, e in rows if e.meta["reference"] == wanted
                   or (len(bare) >= 12 and e.key.startswith(bare))]
        if not matches:
            raise HpcctlError(f"no cached image matches '{wanted}'", "see `hpcctl image ls`")
        for cache, entry in matches:
            tier = _tier(cache)
            if tier == "shared":
                if os.geteuid() != 0:
                    raise HpcctlError(f"only root can remove images from the shared store at {cache.root}",
                                      "run `hpcctl image rm` as root")
                from hpcctl.image import shared_gc
                shared_gc.remove(cache, entry)
            elif not cache.writable():
                raise HpcctlError(f"only root can remove images from the node cache at {cache.root}",
                                  "run `hpcctl image rm` as root, or let `hpcctl image gc` on the node do it")
            else:
                gc.remove(cache, entry)
            removed.append({"reference": entry.meta["reference"], "digest": entry.digest, "size": entry.size,
                            "tier": tier})
    if args.json:
        print_json(removed)
    else:
        for item in removed:
            print(f"removed {item['reference']} ({item['digest'][:19]})")
    return 0


def _gc(args: argparse.Namespace) -> int:
    from hpcctl.image import api, gc
    from hpcctl.image.progress import human
    from hpcctl.site.config import parse_size
    site = _site(args)
    target = site.cache.low_watermark
    if args.target is not None:
        try:
            target = parse_size(args.target)
        except ValueError:
            from hpcctl.errors import HpcctlError
            raise HpcctlError(f"--target '{args.target}' is not a size", "write e.g. 10GiB, 500M or 0") from None
    results = [{**gc.collect(cache, target, dry_run=args.dry_run).to_dict(), "tier": _tier(cache),
                "cache": str(cache.root)} for cache in _caches(site, args) if cache.writable()]
    shared = api.shared_store(site, args.node) if os.geteuid() == 0 and args.target is not None else None
    if shared:  # the shared store has no watermarks: it shrinks when an admin names a target
        from hpcctl.image import shared_gc
        results.append({**shared_gc.collect(shared, target, dry_run=args.dry_run), "tier": "shared",
                        "cache": str(shared.root)})
    if args.json:
        print_json(results)
        return 0
    for result in results:
        verb = "would remove" if args.dry_run else "removed"
        for item in result["removed"]:
            print(f"{verb} {item['reference']} ({human(item['size'])})")
        for ref in result["in_use"]:
            print(f"kept {ref} (in use)")
        print(f"{result['tier']} cache {result['cache']}: {human(result['usage_before'])} -> "
              f"{human(result['usage_after'])} (target {human(target)})")
    return 0
