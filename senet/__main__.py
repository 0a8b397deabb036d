"""``python -m senet``: the same as the ``senet`` console script."""

from senet.cli import main

raise SystemExit(main())
