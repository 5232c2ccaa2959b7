"""YAML loading that remembers where every value came from.

Roster errors must name the file, line and column of the offending value, so the roster is parsed into
plain Python data *and* a map from each value's path (``("freelancers", 2, "sandboxes", 0, "tier")``)
to its position. Duplicate mapping keys, which plain YAML loaders silently collapse, are errors here:
a duplicated ``tier`` key must not silently win.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import yaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in an input file, printed as ``FILE:LINE:COL: PATH: MESSAGE``."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class InputError(Exception):
    """Raised with every diagnostic found, so a person can fix them all in one pass."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def format_path(path: Iterable[str | int]) -> str:
    """``("freelancers", 1, "sandboxes", 0, "tier")`` -> ``freelancers[1].sandboxes[0].tier``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass
class Positions:
    """Where each value (and each mapping key) of a loaded document starts, 1-based."""

    file: str
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def of(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """Position of ``path``; falls back to the nearest enclosing value that has one."""
        table = self.keys if key else self.values
        current = tuple(path)
        if current in table:
            return table[current]
        while current:
            current = current[:-1]
            if current in self.values:
                return self.values[current]
        return (1, 1)

    def diagnostic(self, path: Sequence[str | int], message: str, *, key: bool = False) -> Diagnostic:
        line, column = self.of(path, key=key)
        return Diagnostic(self.file, line, column, format_path(path), message)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _to_python(node: yaml.Node, path: PathKey, positions: Positions, errors: list[Diagnostic]) -> object:
    positions.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[object, object] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, path, positions, errors) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                line, col = _mark(key_node)
                errors.append(Diagnostic(positions.file, line, col, format_path(path), "mapping keys must be strings"))
                continue
            child = (*path, key)
            if key in result:
                line, col = _mark(key_node)
                errors.append(
                    Diagnostic(
                        positions.file,
                        line,
                        col,
                        format_path(child),
                        f"duplicate key '{key}' (first given at line {positions.keys[child][0]})",
                    )
                )
                continue
            positions.keys[child] = _mark(key_node)
            result[key] = _to_python(value_node, child, positions, errors)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), positions, errors) for i, item in enumerate(node.value)]
    return _scalar(node, path, positions, errors)


def _scalar(node: yaml.Node, path: PathKey, positions: Positions, errors: list[Diagnostic]) -> object:
    """A scalar's Python value, as ``yaml.safe_load`` would construct it; a value no safe constructor takes
    (an unknown ``!tag``, bad ``!!binary``) is a diagnostic, not an exception.

    Strings, most of a roster, are taken as they are; other scalars (keys' booleans, numbers, ``null``)
    repeat, so each distinct one is constructed once."""
    if node.tag == _STR_TAG:
        return node.value
    key = (node.tag, node.value)
    if key in _CONSTRUCTED:
        return _CONSTRUCTED[key]
    try:
        value = _SCALAR_LOADER.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        line, col = _mark(node)
        errors.append(
            Diagnostic(positions.file, line, col, format_path(path), f"cannot read this value: {exc.problem}")
        )
        return None
    finally:
        # construct_object caches every node it builds; without this the cache keeps every roster ever loaded.
        _SCALAR_LOADER.constructed_objects.clear()
    if len(_CONSTRUCTED) < _CONSTRUCTED_MAX and len(node.value) <= _CONSTRUCTED_VALUE_MAX:
        _CONSTRUCTED[key] = value
    return value


_STR_TAG = "tag:yaml.org,2002:str"
# Constructed non-string scalars (all immutable: numbers, booleans, None, timestamps, bytes), by tag and text.
_CONSTRUCTED: dict[tuple[str, str], object] = {}
_CONSTRUCTED_MAX = 10_000
_CONSTRUCTED_VALUE_MAX = 64
# Constructs scalars with the same YAML 1.1 resolution as yaml.safe_load (``true`` is a bool, ``5`` an int).
_SCALAR_LOADER = yaml.SafeLoader("")
# libyaml's parser, when PyYAML was built with it: composing a 1,000-freelancer roster takes ~0.05 s with it
# and ~0.8 s with the pure-Python parser (bench/RESULTS.md).
_C_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
_FAST_LOADER: type[yaml.SafeLoader] | None = None
if _C_LOADER is not None:

    class _CachedResolverLoader(_C_LOADER):  # type: ignore[valid-type,misc]
        """libyaml's loader, with the tag of each distinct plain scalar resolved once: libyaml calls back into
        the Python resolver for every scalar (172,000 of them in a 10,000-freelancer roster, mostly the same
        keys and tiers), and the resolver tries every implicit-type pattern each time."""

        _tags: ClassVar[dict[tuple[type[yaml.Node], str | None, object], str]] = {}

        def resolve(self, kind: type[yaml.Node], value: str | None, implicit: object) -> str:
            key = (kind, value, implicit)
            tag = self._tags.get(key)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(self._tags) < 100_000:
                    self._tags[key] = tag
            return tag

    _FAST_LOADER = _CachedResolverLoader
# Where libyaml and the pure-Python parser disagree (found by differential fuzzing of rosters): tabs, '?' in
# flow mappings, empty '!' tags. Anchors, aliases and directives are left to the pure parser too.
_SLOW_PATH_CHARACTERS = frozenset("\t?!&*%")


def _compose(text: str) -> list[yaml.Node | None]:
    """Every document's node tree, exactly as the pure-Python parser builds it.

    libyaml is used only for plain rosters (ASCII, none of the characters above), where both parsers
    give the same nodes and marks; syntax errors are always reported by the pure-Python parser, so a
    roster gets the same message and position whichever parser PyYAML has."""
    if _FAST_LOADER is not None and text.isascii() and _SLOW_PATH_CHARACTERS.isdisjoint(text):
        try:
            return list(yaml.compose_all(text, Loader=_FAST_LOADER))
        except yaml.MarkedYAMLError:
            pass  # composed again below, for the pure-Python parser's message
    return list(yaml.compose_all(text, Loader=yaml.SafeLoader))


def load_yaml(path: Path, *, display_name: str | None = None) -> tuple[object, Positions]:
    """Parse one YAML document; raises :class:`InputError` for unreadable files and syntax errors."""
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError([Diagnostic(name, 1, 1, "", f"cannot read file: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise InputError([Diagnostic(name, 1, 1, "", f"file is not UTF-8: {exc.reason}")]) from exc
    return load_yaml_text(text, name)


def load_yaml_text(text: str, name: str) -> tuple[object, Positions]:
    """Like :func:`load_yaml` for text already in memory (tests, stdin)."""
    positions = Positions(name)
    try:
        nodes = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise InputError([Diagnostic(name, line, col, "", f"YAML syntax error: {problem}")]) from exc
    if len(nodes) != 1 or nodes[0] is None:
        what = "is empty" if not nodes or nodes[0] is None else f"has {len(nodes)} YAML documents (expected one)"
        raise InputError([Diagnostic(name, 1, 1, "", f"file {what}")])
    errors: list[Diagnostic] = []
    data = _to_python(nodes[0], (), positions, errors)
    if errors:
        raise InputError(errors)
    return data, positions
