"""``python -m qclip``: the ``qclip`` command without an installed entry point (e.g. on a bare GPU machine)."""

import sys

from .cli import main

sys.exit(main())
