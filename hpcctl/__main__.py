"""python -m hpcctl: the same as the hpcctl command."""

from hpcctl.cli import main

raise SystemExit(main())
