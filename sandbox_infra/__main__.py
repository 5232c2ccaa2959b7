"""``python -m sandbox_infra``: see :mod:`sandbox_infra.cli`."""

from sandbox_infra.cli import main

raise SystemExit(main())
