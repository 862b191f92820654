from hpcctl.cli import main

raise SystemExit(main())
