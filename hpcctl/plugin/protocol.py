"""How the shim talks to the core: JSON on stdin, JSON on stdout, one error line on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from hpcctl.errors import HpcctlError


def serve(handler: Callable[[dict, str], dict], argv: list[str] | None = None) -> int:
    """Run ``handler(request, site_path)``; every failure becomes exit 1 and one line the user sees."""
    argv = sys.argv[1:] if argv is None else argv
    site_path = argv[argv.index("--site") + 1] if "--site" in argv else "/etc/hpcctl/site.yaml"
    try:
        request = json.load(sys.stdin)
        reply = handler(request, site_path)
    except HpcctlError as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 1
    except Exception as exc:  # the shim must get one line, never a traceback it cannot show
        print(f"hpcctl internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
              "(report it to your site admins)", file=sys.stderr)
        return 1
    json.dump(reply, sys.stdout)
    return 0
