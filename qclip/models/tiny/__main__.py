from .model import _main

raise SystemExit(_main())
