"""`hpcctl sandbox up|status|down`: the local test cluster, the way kind is for Kubernetes."""

from __future__ import annotations

from hpcctl.cli.output import print_json, print_table


def register(sub) -> None:
    sandbox = sub.add_parser(
        "sandbox", help="a real Slurm cluster, registry and test images on this machine",
        description="Install (apt-get) and start, idempotently, a local Slurm cluster with N nodes (n1..nN, "
                    "default 2; partition debug: n1, n2 with two fake GPUs each; partition scale: all), PMIx MPI, "
                    "the hpcctl SPANK plugin, an OCI registry on 127.0.0.1:5000 (one with basic auth on "
                    "127.0.0.1:5001, a pull-through mirror of the first on 127.0.0.1:5002) holding test images, "
                    "and the unprivileged test user hpcuser. Needs root on Debian or Ubuntu.")
    cmds = sandbox.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    cmds.required = True
    up = cmds.add_parser("up", help="install what is missing and start everything (idempotent)",
                         description="Install what is missing and start everything; a second run takes seconds "
                                     "and changes nothing.")
    up.add_argument("--no-images", action="store_true", help="skip building and pushing the test images")
    up.add_argument("--nodes", type=int, metavar="N",
                    help="run N slurmd nodes (2 to 64; default: as many as last time, else 2)")
    up.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    up.set_defaults(func=run_up)
    status = cmds.add_parser("status", help="show what runs, where, and where the logs are")
    status.add_argument("--json", action="store_true", help="print as JSON")
    status.set_defaults(func=run_status)
    down = cmds.add_parser("down", help="stop what `up` started (and nothing else)")
    down.set_defaults(func=run_down)
    demo = cmds.add_parser("demo", help="run a first containerized GPU job on the sandbox as hpcuser",
                           description="Submit a containerized job with one GPU as the test user, wait for it "
                                       "and print its output.")
    demo.set_defaults(func=run_demo)


def run_up(args) -> int:
    from hpcctl.sandbox.up import up

    if not args.quiet:
        print("hpcctl sandbox up:")
    changed = up(quiet=args.quiet, images=not args.no_images, nodes=args.nodes)
    if not args.quiet:
        summary = f"{changed} step(s) changed something" if changed else "nothing changed"
        print(f"sandbox ready ({summary}): try `sinfo`, or `hpcctl sandbox status`")
    return 0


def run_status(args) -> int:
    from hpcctl.sandbox.up import status

    info = status()
    if args.json:
        print_json(info)
        return 0
    rows = [[d["name"], f"running (pid {d['pid']})" if d["pid"] else "stopped", d["log"]] for d in info["daemons"]]
    print_table(["DAEMON", "STATE", "LOG"], rows)
    print()
    print("nodes:      " + (", ".join(f"{n} {s}" for n, s in info["nodes"].items()) or "none (slurmctld down)"))
    print("registries: " + ", ".join(f"{a} {'up' if ok else 'down'}" for a, ok in info["registries"].items()))
    print(f"site config {info['site_config']}, plugin {info['plugin']}, test user {info['test_user']}")
    return 0 if all(d["pid"] for d in info["daemons"]) else 1


def run_down(args) -> int:
    from hpcctl.sandbox.up import down

    stopped = down()
    print(f"stopped {len(stopped)} daemon(s)" if stopped else "nothing to stop: `up` started nothing that runs")
    return 0


def run_demo(args) -> int:
    from hpcctl.sandbox.demo import run_demo as demo

    print(demo())
    return 0
