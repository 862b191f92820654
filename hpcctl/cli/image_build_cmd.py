"""`hpcctl image build`: a Dockerfile or Singularity .def built with the local Docker daemon, into the cache and
(with --push) into a registry; `hpcctl image push`: a .sif into a registry as an ORAS artifact."""

from __future__ import annotations

import argparse
import sys

from hpcctl.cli.output import print_json

BUILD_HELP = """\
Build a Dockerfile or a Singularity/Apptainer .def recipe with the Docker daemon of THIS machine (through the docker
SDK; DOCKER_HOST is honoured), convert the image into the image cache here, and with --push push it to the registry
named in -t.

What runs where: the build needs Docker on the machine that builds (a login or build node with dockerd, and a user
allowed on its socket); compute nodes never build and need no Docker: jobs run the pushed image
(srun --container-image=REGISTRY/REPOSITORY:TAG), or, on a node whose Docker daemon holds it,
--container-image=dockerd://REGISTRY/REPOSITORY:TAG.

Dockerfiles: the build context is the Dockerfile's directory.
.def recipes (Bootstrap: docker only) are parsed with spython and built as Apptainer builds them: %files (paths
relative to the recipe's directory) are copied in, %post runs as one script with /bin/sh -e -x (or %post -c SHELL),
%environment's NAME=VALUE lines become the image's environment, %runscript becomes /.singularity.d/runscript and the
image's CMD (run it with `srun --container-image=IMAGE /.singularity.d/runscript ARGS`), %labels become labels and
%help /.singularity.d/runscript.help. %test and %startscript are skipped with a note; %setup, %arguments, SCIF %app*
sections, other bootstrap agents and multi-stage recipes are refused, one line each, before anything builds."""


def register_actions(sub) -> None:
    build = sub.add_parser("build", help="build a Dockerfile or .def with this machine's Docker daemon "
                                         "(then cache it; --push: to a registry)",
                           description=BUILD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("file", metavar="FILE", help="a Dockerfile, or a Singularity recipe (.def, or starting with "
                                                    "Bootstrap:)")
    build.add_argument("-t", "--tag", required=True, metavar="NAME",
                       help="the image's name, REGISTRY/REPOSITORY[:TAG] (where --push pushes it)")
    build.add_argument("--push", action="store_true", help="push the image to the registry named in -t")
    build.add_argument("--network", metavar="MODE",
                       help="network of the build's RUN steps (Docker's --network, e.g. none)")
    build.add_argument("--quiet", "-q", action="store_true", help="hide the build's output")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.add_argument("--node", metavar="NAME", help="the Slurm node whose cache to convert it into, where "
                                                      "cache.root is per node (%%n) and this host runs several")
    build.set_defaults(func=_build)

    push = sub.add_parser("push", help="push a .sif to a registry as an ORAS artifact (as apptainer push oras:// does)",
                          description="Push a Singularity/Apptainer .sif to an OCI registry as an ORAS artifact, laid "
                                      "out as `apptainer push oras://` lays it out, so jobs on every node run it with "
                                      "--container-image=oras://REGISTRY/REPOSITORY:TAG. Credentials come from "
                                      "~/.config/enroot/.credentials or docker login, as for pulls.")
    push.add_argument("file", metavar="FILE.sif")
    push.add_argument("target", metavar="oras://REGISTRY/REPOSITORY[:TAG]")
    push.set_defaults(func=_push)


def _build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hpcctl.image import api, build, credentials
    from hpcctl.image.progress import human
    from hpcctl.site import select
    from hpcctl.site.nodes import cache_node

    site = select.load(args.site)
    ref = build.target(args.tag)

    def log(line: str) -> None:
        if not args.quiet or line.startswith("note: "):
            print(line, file=sys.stderr)

    image_id = build.build(Path(args.file), ref, args.network, log)
    name = build.docker_name(ref)
    cached = api.ensure(f"dockerd://{name}", site, progress=not (args.json or args.quiet),
                        node=cache_node(site, args.node))
    result = {"name": name, "image_id": image_id, "path": cached.path, "size": cached.size}
    if args.push:
        found = credentials.lookup(ref.registry, None, None, site.registries.netrc, site.registries.docker_config)
        result["pushed"] = f"{ref.canonical}@{build.push(ref, found, log)}"
    if args.json:
        print_json(result)
        return 0
    print(f"built {name} ({image_id[:19]}): {cached.path} ({human(cached.size)})")
    if args.push:
        print(f"pushed {result['pushed']}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hpcctl.errors import HpcctlError
    from hpcctl.image import api, oras
    from hpcctl.image.progress import Progress
    from hpcctl.image.reference import ImageRef, parse
    from hpcctl.site import select

    site = select.load(args.site)
    ref = parse(args.target, site.registries.default)
    if not isinstance(ref, ImageRef) or not ref.oras or ref.digest:
        raise HpcctlError(f"push target '{args.target}' is not an oras:// reference with a tag",
                          "write oras://REGISTRY/REPOSITORY[:TAG]")
    digest = oras.push(Path(args.file), api.registry_for(ref, site, actions="pull,push"), ref.tag, Progress(True))
    print(f"pushed {args.file} as {ref.pinned(digest)}")
    return 0
