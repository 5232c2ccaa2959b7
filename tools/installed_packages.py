"""Print what ``python -m pip list -v --format json`` prints, without importing pip (see tools/pulumi-python).

One entry per installed distribution, the first found on ``sys.path`` when a name is installed twice (as
pip reports it), sorted by normalized name as pip sorts them: ``name``, ``version``, ``location`` (the ``sys.path``
entry holding it) and ``installer``.
"""

from __future__ import annotations

import json
import re
import sys
from importlib.metadata import distributions


def installed() -> list[dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        installer = (dist.read_text("INSTALLER") or "").strip()
        seen[key] = {
            "name": name,
            "version": dist.version,
            "location": str(dist.locate_file("")),
            "installer": installer,
        }
    return [seen[key] for key in sorted(seen)]


if __name__ == "__main__":
    json.dump(installed(), sys.stdout)
    sys.stdout.write("\n")
