"""`hpcctl site check|explain|schema`: validate a site config, check it on this node, show a job's plan."""

from __future__ import annotations

import json

from hpcctl.cli.output import print_json, print_table


def register(sub) -> None:
    site = sub.add_parser("site", help="validate and inspect site configs",
                          description="Validate and inspect the site config that the plugin and the CLI share.")
    cmds = site.add_subparsers(dest="site_command", metavar="SUBCOMMAND")
    cmds.required = True

    check = cmds.add_parser("check", help="validate a site config and check its paths on this node",
                            description="Validate FILE (default: the active site config) against the schema, "
                                        "then check that every file, device, library and directory it names "
                                        "exists on this node. Exit 0 when all required ones exist, 1 when some "
                                        "are missing, 2 when the config is invalid.")
    check.add_argument("file", nargs="?", help="site config file (default: the active one)")
    check.add_argument("--node", help="node name for %%n in paths (default: this host)")
    check.add_argument("--syntax-only", action="store_true", help="validate only; do not look at this node")
    check.add_argument("--json", action="store_true", help="print findings as JSON")
    check.set_defaults(func=run_check)

    explain = cmds.add_parser("explain", help="print the mount plan a job would get (what, where, why)",
                              description="Print the mounts and environment changes a job step would get on a node "
                                          "from the site config, built by the plugin's own builder (the same plan "
                                          "`hpcctl run --plan-only` prints and a job's step executes): site "
                                          "mounts, the allocated GPUs and the driver stack, the host MPI bound over "
                                          "the image's after the ABI check. Reads the host and the image.")
    explain.add_argument("--image", required=True, metavar="IMAGE|ROOTFS",
                         help="an image reference or squashfs file, as --container-image (pulled into the cache "
                              "when missing), or an unpacked root tree (a directory)")
    explain.add_argument("--gpus", type=int, default=0, metavar="N", help="GPUs allocated (GRES indices 0..N-1)")
    explain.add_argument("--mpi", metavar="NAME", help="MPI flavour, as --container-mpi (default: the site's; "
                                                       "'none' for no MPI)")
    explain.add_argument("--node", help="node name for %%n and gres.conf (default: this host)")
    explain.add_argument("--user", metavar="NAME", help="the job's user (default: $SUDO_USER, else root)")
    explain.add_argument("--json", action="store_true", help="print the plan as JSON")
    explain.set_defaults(func=run_explain)

    schema = cmds.add_parser("schema", help="print the site config JSON Schema",
                             description="Print the JSON Schema of site configs, for editors and CI linting.")
    schema.set_defaults(func=run_schema)


def run_check(args) -> int:
    from hpcctl.container.node_check import check_node
    from hpcctl.site import select
    from hpcctl.site.config import load_site

    path = args.file or str(select.select(args.site))
    site = load_site(path)
    findings = [] if args.syntax_only else check_node(site, args.node)
    missing = [f for f in findings if f.required and not f.found]
    if args.json:
        print_json({"file": path, "valid": True, "findings": [f.to_dict() for f in findings],
                    "missing": len(missing)})
    else:
        print(f"{path}: valid site config for cluster '{site.cluster}'")
        if findings:
            rows = [[f.section, f.what, f.path, "ok" if f.found else ("MISSING" if f.required else "absent"),
                     f.detail] for f in findings]
            print_table(["SECTION", "WHAT", "PATH", "STATUS", "DETAIL"], rows)
        if missing:
            print(f"{len(missing)} required path(s) missing on this node")
    return 1 if missing else 0


def run_explain(args) -> int:
    import os
    import socket
    import tempfile

    from hpcctl.container import local, options
    from hpcctl.site import select

    site = select.load(args.site)
    node = args.node or socket.gethostname().split(".")[0]
    user = local.run_user(args.user, os.environ)
    gpus = tuple(range(args.gpus))
    # root keeps the user's identity files where `hpcctl run` does; anyone else in a directory of their own
    state = local.state_dir(site) if os.geteuid() == 0 else tempfile.mkdtemp(prefix="hpcctl-explain-")
    with local.opened_image(args.image, site, user, not args.json, args.node) as image:
        opts = options.parse({"image": image.path, **({"mpi": args.mpi} if args.mpi else {})}, os.getcwd())
        container, _ = local.step_container(site, image, opts, user, gpus, node, state)
    mpi = opts.mpi or site.mpi.default
    if args.json:
        print_json({"node": node, "gpus": list(gpus), "mpi": mpi, **container.to_dict()})
        return 0
    print(f"Plan for image {args.image} on node {node} (cluster '{site.cluster}'): "
          f"{len(gpus)} GPU(s), MPI {mpi or 'none'}")
    print_plan(container.plan)
    return 0


def print_plan(plan) -> None:
    """Mounts, environment and notes of a plan (an Explanation, or a MountPlan for `hpcctl run --plan-only`)."""
    print("\nMounts:")
    print_table(["KIND", "SOURCE", "TARGET", "MODE", "WHY"],
                [[m.kind, m.source, m.target, "ro" if m.readonly else "rw", m.why] for m in plan.mounts])
    print("\nEnvironment:")
    print_table(["OP", "NAME", "VALUE", "WHY"], [[e.op, e.name, e.value, e.why] for e in plan.env])
    if plan.ldconfig:
        print("\nThe container's linker cache is rebuilt in the overlay (the cached image is not changed).")
    if plan.notes:
        print("\nNotes:")
        for note in plan.notes:
            print(f"  - {note}")


def run_schema(args) -> int:
    from hpcctl.site.schema import SITE_SCHEMA

    print(json.dumps(SITE_SCHEMA, indent=2))
    return 0
