"""Small, path-free text summaries of profiles: cProfile (the Python program) and pprof (the engine)."""

from __future__ import annotations

import pstats
import re
import shutil
import subprocess
import sys
import sysconfig
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from bench.project import REPO

_PREFIXES = (
    (sysconfig.get_paths()["purelib"] + "/", ""),
    (sysconfig.get_paths()["stdlib"] + "/", "<stdlib>/"),
    (str(REPO) + "/", ""),
)


def _short(filename: str) -> str:
    for prefix, replacement in _PREFIXES:
        if filename.startswith(prefix):
            return replacement + filename[len(prefix) :]
    # Files of a temporary project copy: keep the part from sandbox_infra/ on.
    match = re.search(r"/(sandbox_infra/.*|__main__\.py)$", filename)
    if match:
        return match.group(1)
    return filename if filename.startswith("<") or filename == "~" else Path(filename).name


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name  # a built-in
    return f"{_short(filename)}:{line}({name})"


def _area(filename: str) -> str:
    """Which part of the stack a function belongs to, for the time breakdown."""
    short = _short(filename)
    for prefix, area in (
        ("sandbox_infra/", "our program (sandbox_infra)"),
        ("__main__.py", "our program (sandbox_infra)"),
        ("pulumi_kubernetes/", "pulumi-kubernetes SDK"),
        ("pulumi/", "pulumi SDK"),
        ("grpc/", "gRPC"),
        ("google/protobuf", "protobuf"),
        ("yaml/", "PyYAML"),
        ("pydantic", "pydantic"),
        ("<stdlib>/asyncio/", "asyncio"),
        ("tests/unit/mocks.py", "unit-test mocks"),
        ("bench/", "benchmark harness"),
    ):
        if short.startswith(prefix):
            return area
    if filename == "~":
        return "built-ins (C)"
    return "other Python"


def cprofile_summary(path: Path, *, title: str, top: int = 25) -> str:
    """Top ``top`` functions by cumulative time, then own ("tottime") time summed per area."""
    stats = pstats.Stats(str(path))
    raw: Mapping[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    rows = sorted(raw.items(), key=lambda item: item[1][3], reverse=True)[:top]
    lines = [
        f"# {title}",
        f"# cProfile, main thread; {total:.1f} s of own time in total."
        " Paths are relative to site-packages or the repository.",
        "",
        f"{'ncalls':>10} {'tottime':>8} {'cumtime':>8}  function",
    ]
    for func, (_, ncalls, tottime, cumtime, _) in rows:
        lines.append(f"{ncalls:>10} {tottime:>8.2f} {cumtime:>8.2f}  {_label(func)}")
    areas: dict[str, float] = defaultdict(float)
    for func, (_, _, tottime, _, _) in raw.items():
        areas[_area(func[0])] += tottime
    lines += ["", "# own time by area", ""]
    for area, seconds in sorted(areas.items(), key=lambda item: item[1], reverse=True):
        lines.append(f"{seconds:>8.2f} s  {100 * seconds / total:>5.1f} %  {area}")
    return "\n".join(lines) + "\n"


def areas(path: Path) -> list[tuple[str, float, float]]:
    """(area, seconds, share) of own time, largest first."""
    stats = pstats.Stats(str(path))
    raw: Mapping[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values()) or 1.0
    sums: dict[str, float] = defaultdict(float)
    for func, (_, _, tottime, _, _) in raw.items():
        sums[_area(func[0])] += tottime
    return sorted(((a, s, s / total) for a, s in sums.items()), key=lambda item: item[1], reverse=True)


def pprof_summary(binary: str, profile: Path, *, title: str, top: int = 25) -> str | None:
    """``go tool pprof -top -cum`` of an engine CPU profile, or None when Go is not available."""
    go = shutil.which("go")
    if go is None:
        return None
    result = subprocess.run(
        [go, "tool", "pprof", "-top", "-cum", f"-nodecount={top}", binary, str(profile)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(f"[bench] go tool pprof failed: {result.stderr[-500:]}", file=sys.stderr)
        return None
    body = [line for line in result.stdout.splitlines() if not line.startswith(("File:", "Build ID:", "Time:"))]
    return f"# {title}\n# go tool pprof -top -cum (the pulumi engine process)\n\n" + "\n".join(body) + "\n"


def pprof_top_functions(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Cumulative share (%) of selected engine functions in a ``pprof -top -cum`` listing."""
    shares: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[-1] in names:
            shares[parts[-1]] = float(parts[4].rstrip("%"))
    return shares
