"""How the shim talks to the core: JSON on stdin, JSON on stdout, one error line on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from hpcctl.errors import HpcctlError
from hpcctl.plugin import plugstack
from hpcctl.site.config import SYSTEM_SITE_FILE, SiteConfig, load_site


def serve(handler: Callable[[dict, SiteConfig], dict], argv: list[str] | None = None) -> int:
    """Run ``handler(request, site)``; every failure becomes exit 1 and one line the user sees.
    argv: ``--site PATH`` and any number of ``--default KEY=VALUE`` (plugstack.conf arguments)."""
    argv = sys.argv[1:] if argv is None else argv
    site_path = argv[argv.index("--site") + 1] if "--site" in argv else str(SYSTEM_SITE_FILE)
    defaults = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--default"]
    try:
        site = plugstack.apply(load_site(site_path), defaults)
        request = json.load(sys.stdin)
        reply = handler(request, site)
    except HpcctlError as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 1
    except Exception as exc:  # the shim must get one line, never a traceback it cannot show
        print(f"hpcctl internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
              "(report it to your site admins)", file=sys.stderr)
        return 1
    json.dump(reply, sys.stdout)
    return 0
