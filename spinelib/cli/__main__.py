"""``python -m spinelib.cli``: the ``spinelib`` command."""

from spinelib.cli import main

raise SystemExit(main())
