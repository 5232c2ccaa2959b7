"""Limits on roster input, in one place: what the check refuses, so that no input can exhaust it.

A roster comes from a pull request anyone may open, and the check runs unattended in CI; these bound the
time and memory one check can take (docs/reliability.md has the measured worst cases) and are far above
any real roster: the 10,000-freelancer benchmark roster is 2.3 MB, 172,000 nodes, 7 levels deep, with no
alias. The name and email lengths are those of the platform database's columns, so a roster that passes
the check fits them. Breaking a limit is a roster error with a file, line and column (docs/roster.md#limits).
"""

from __future__ import annotations

MAX_FILE_BYTES = 8 * 1024 * 1024
"""Size of a roster file (8 MiB, about 35,000 freelancers)."""

MAX_NODES = 1_000_000
"""YAML nodes (mappings, lists, keys and values) in the document, counted after expanding aliases."""

MAX_DEPTH = 32
"""Nesting of mappings and lists (a roster needs 7: freelancers[].sandboxes[].resources.limits.cpu)."""

MAX_ALIASES = 10_000
"""Aliases (``*name``) in the document."""

MAX_SCALAR_CHARS = 4096
"""Characters in any one key or value."""

# The widths of the platform database's columns these values are stored in (sandbox_infra/migrations/):
# a longer value is a roster error on its line, not a failed database write later.
NAME_MAX = 255
"""A client's or freelancer's display name (``VARCHAR(255)``)."""

EMAIL_MAX = 255
"""An email address (``VARCHAR(255)``)."""
