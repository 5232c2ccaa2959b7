"""YAML loading that remembers where every value came from.

Roster errors must name the file, line and column of the offending value, so the roster is parsed into
plain Python data *and* a map from each value's path (``("freelancers", 2, "sandboxes", 0, "tier")``)
to its position. Duplicate mapping keys, which plain YAML loaders silently collapse, are errors here:
a duplicated ``tier`` key must not silently win.

No input may crash or stall the check: the limits of :mod:`sandbox_infra.limits` (file size, nodes counted
after expanding aliases, nesting depth, aliases, scalar length) are enforced while the document is read,
and breaking one is a diagnostic with a position like any other (docs/roster.md#limits).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import yaml

from sandbox_infra import parse_cache
from sandbox_infra.limits import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, MAX_SCALAR_CHARS

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
    """``("freelancers", 1, "sandboxes", 0, "tier")`` -> ``freelancers[1].sandboxes[0].tier``; a key that
    is empty, holds ``.`` or ``[`` or anything unprintable is quoted (``clients[0]['a\\nb']``), so that a
    diagnostic stays on one line and shows what is there."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.isprintable() or not part or "." in part or "[" in part:
            out += f"[{part!r}]"
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


_LIMIT = "limit: docs/roster.md#limits"


class _Mark(Protocol):
    """Where an event or node starts (PyYAML's and libyaml's marks both have these, 0-based)."""

    line: int
    column: int


class _LimitError(Exception):
    """A limit of :mod:`sandbox_infra.limits` broken at ``mark``: the document is not read further."""

    def __init__(self, mark: _Mark | None, message: str) -> None:
        super().__init__(message)
        self.position = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.message = message

    def diagnostic(self, name: str) -> Diagnostic:
        return Diagnostic(name, *self.position, "", self.message)


def _too_many_nodes(mark: _Mark | None) -> _LimitError:
    return _LimitError(mark, f"more than {MAX_NODES:,} YAML nodes, counting what aliases repeat ({_LIMIT})")


def _too_deep(mark: _Mark | None) -> _LimitError:
    return _LimitError(mark, f"nested more than {MAX_DEPTH} levels deep ({_LIMIT})")


@dataclass
class _Budget:
    """Nodes seen so far; one per document stream, whichever parser composed it."""

    nodes: int = 0


def _count(node: yaml.Node, depth: int, budget: _Budget) -> None:
    """Count a subtree that is not converted (a duplicate key's value, a key that is not a string), so that
    the limits are the same whether or not a subtree is converted (and whichever parser composed it)."""
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        raise _too_many_nodes(node.start_mark)
    if depth > MAX_DEPTH:
        raise _too_deep(node.start_mark)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _count(key_node, depth + 1, budget)
            _count(value_node, depth + 1, budget)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _count(item, depth + 1, budget)


_CORE = "tag:yaml.org,2002:"
# The YAML types a roster may hold: what each scalar tag reads as, for the message when it cannot be read.
_SCALAR_TAGS = {
    f"{_CORE}str": "a string",
    f"{_CORE}int": "an integer",
    f"{_CORE}float": "a number",
    f"{_CORE}bool": "true or false",
    f"{_CORE}null": "null",
    f"{_CORE}timestamp": "a date",
}
_COLLECTION_TAGS: dict[type[yaml.Node], str] = {yaml.MappingNode: f"{_CORE}map", yaml.SequenceNode: f"{_CORE}seq"}
_MERGE = f"{_CORE}merge"


def _tag_problem(node: yaml.Node) -> str | None:
    expected = _COLLECTION_TAGS.get(type(node))
    if node.tag == expected or (expected is None and node.tag in _SCALAR_TAGS):
        return None
    tag = node.tag.replace(_CORE, "!!") if node.tag.startswith(_CORE) else node.tag
    return f"unsupported tag {tag!r}: a roster holds only strings, numbers, true/false, null, lists and mappings"


def _scalar(node: yaml.ScalarNode, path: PathKey, positions: Positions, errors: list[Diagnostic]) -> object:
    """A scalar's Python value, as ``yaml.safe_load`` would construct it; a value that is too long, has a
    tag a roster does not hold, or that its tag cannot read is a diagnostic (and None), not an exception.

    Strings, most of a roster, are taken as they are; other scalars (keys' booleans, numbers, ``null``)
    repeat, so each distinct one is constructed once."""
    if len(node.value) > MAX_SCALAR_CHARS:
        message = f"{len(node.value):,} characters long (at most {MAX_SCALAR_CHARS:,}: docs/roster.md#limits)"
        errors.append(positions.diagnostic(path, message))
        return None
    if node.tag == _STR_TAG:
        return node.value
    key = (node.tag, node.value)
    if key in _CONSTRUCTED:
        return _CONSTRUCTED[key]
    problem = _tag_problem(node)
    if problem is None:
        try:
            value = _SCALAR_LOADER.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            # PyYAML's constructors fail in all of these ways (2020-02-30, !!int x, !!bool maybe, ...).
            problem = f"cannot read {node.value[:60]!r} as {_SCALAR_TAGS[node.tag]} (quote it if it is a string)"
        else:
            if len(_CONSTRUCTED) < _CONSTRUCTED_MAX and len(node.value) <= _CONSTRUCTED_VALUE_MAX:
                _CONSTRUCTED[key] = value
            return value
        finally:
            # construct_object caches every node it builds; without this the cache keeps every roster ever loaded.
            _SCALAR_LOADER.constructed_objects.clear()
            _SCALAR_LOADER.recursive_objects.clear()
    errors.append(positions.diagnostic(path, problem))
    return None


_STR_TAG = f"{_CORE}str"
# Constructed non-string scalars (all immutable: numbers, booleans, None, timestamps), by tag and text.
_CONSTRUCTED: dict[tuple[str, str], object] = {}
_CONSTRUCTED_MAX = 10_000
_CONSTRUCTED_VALUE_MAX = 64


def _to_python(
    node: yaml.Node, path: PathKey, positions: Positions, errors: list[Diagnostic], budget: _Budget
) -> object:
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        raise _too_many_nodes(node.start_mark)
    if len(path) > MAX_DEPTH:
        raise _too_deep(node.start_mark)
    positions.values[path] = _mark(node)
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, path, positions, errors)
    if node.tag != _COLLECTION_TAGS.get(type(node)):
        errors.append(positions.diagnostic(path, _tag_problem(node) or ""))
    if isinstance(node, yaml.MappingNode):
        result: dict[object, object] = {}
        depth = len(path) + 1
        for key_node, value_node in node.value:
            key: object = None
            known = len(errors)
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                budget.nodes += 1
                if budget.nodes > MAX_NODES:
                    raise _too_many_nodes(key_node.start_mark)
                if depth > MAX_DEPTH:
                    raise _too_deep(key_node.start_mark)
                key = _scalar(key_node, path, positions, errors)
            else:
                _count(key_node, depth, budget)
            if isinstance(key, str) and key not in result:
                child = (*path, key)
                positions.keys[child] = _mark(key_node)
                result[key] = _to_python(value_node, child, positions, errors, budget)
                continue
            line, col = _mark(key_node)
            if isinstance(key, str):
                first = positions.keys[(*path, key)][0]
                where, message = format_path((*path, key)), f"duplicate key {key!r} (first given at line {first})"
            elif key_node.tag == _MERGE:
                where, message = (
                    format_path(path),
                    "merge keys ('<<') are not supported in a roster: write the keys out",
                )
            else:
                where, message = format_path(path), "mapping keys must be strings"
            if len(errors) == known:  # not already reported as an unreadable scalar
                errors.append(Diagnostic(positions.file, line, col, where, message))
            _count(value_node, depth, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), positions, errors, budget) for i, item in enumerate(node.value)]
    raise AssertionError(f"unknown YAML node {node!r}")  # pragma: no cover - the composer makes only these three


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


class _LimitedLoader(yaml.SafeLoader):
    """The pure-Python parser, stopped at the first broken limit before it builds what the limit is for: a
    document nested deeper than Python's stack, millions of nodes, or an alias bomb (``*a`` repeating a list
    of aliases of lists...), which is small as nodes but expands exponentially. Counts what expanding aliases
    gives, exactly as :func:`_to_python` does, so the first limit broken and its position are the same."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0  # collections open around the next node
        self._deepest = 0  # deepest node (aliases expanded) since the innermost open anchor
        self._nodes = 0
        self._aliases = 0
        self._open: set[str] = set()  # anchors of the collections being composed
        self._expanded: dict[yaml.Node, tuple[int, int]] = {}  # anchored node -> (nodes, height) once expanded

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _LimitError(event.start_mark, f"more than {MAX_ALIASES:,} aliases ({_LIMIT})")
            if event.anchor in self._open:
                raise _LimitError(event.start_mark, f"alias *{event.anchor} repeats a collection that contains it")
            target = self.anchors.get(event.anchor)
            if target is not None:  # else the composer reports an undefined alias
                nodes, height = self._expanded[target]
                self._nodes += nodes
                if self._nodes > MAX_NODES:
                    raise _too_many_nodes(event.start_mark)
                if self._depth + height > MAX_DEPTH:
                    raise _too_deep(event.start_mark)
                self._deepest = max(self._deepest, self._depth + height)
            return super().compose_node(parent, index)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _too_many_nodes(event.start_mark)
        if self._depth > MAX_DEPTH:
            raise _too_deep(event.start_mark)
        assert isinstance(event, yaml.NodeEvent)  # the composer asks for a node only where one starts
        anchor = event.anchor
        before, deepest = self._nodes, self._deepest
        self._deepest = self._depth
        if anchor is not None:
            self._open.add(anchor)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor or "")
        if anchor is not None and node is not None:
            self._expanded[node] = (self._nodes - before + 1, self._deepest - self._depth)
        self._deepest = max(deepest, self._deepest)
        return node


def _match_end_of_stream(node: yaml.Node | None, text: str) -> None:
    """Where a stream does not end with a line break, libyaml puts its end at the start of one more line and
    PyYAML at the end of the last line. Only the last node can be there (an empty value, as in ``---``):
    give it PyYAML's position (found by differential fuzzing)."""
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    if not isinstance(node, yaml.ScalarNode):
        return
    lines = text.count("\n") + text.count("\r") - text.count("\r\n")
    if (node.start_mark.line, node.start_mark.column) == (lines + 1, 0):
        column = len(text) - 1 - max(text.rfind("\n"), text.rfind("\r"))
        node.start_mark = node.end_mark = yaml.Mark(node.start_mark.name, len(text), lines, column, None, 0)


def _compose(text: str) -> list[yaml.Node | None]:
    """Every document's node tree, exactly as the pure-Python parser builds it.

    libyaml is used only for plain rosters (ASCII, none of the characters above), where both parsers
    give the same nodes and marks; syntax errors are always reported by the pure-Python parser, so a
    roster gets the same message and position whichever parser PyYAML has. Only the pure-Python parser
    meets aliases; libyaml stops at 1,000 levels of nesting (then the pure-Python parser reports the limit)."""
    if _FAST_LOADER is not None and text.isascii() and _SLOW_PATH_CHARACTERS.isdisjoint(text):
        try:
            nodes: list[yaml.Node | None] = list(yaml.compose_all(text, Loader=_FAST_LOADER))
            if nodes and text[-1] not in "\r\n":
                _match_end_of_stream(nodes[-1], text)
            return nodes
        except yaml.YAMLError:
            pass  # composed again below, for the pure-Python parser's message
    return list(yaml.compose_all(text, Loader=_LimitedLoader))


# What YAML counts as a line break (\r\n is one).
_LINE_BREAKS = "\n\r\x85\u2028\u2029"


def _position(text: str, index: int) -> tuple[int, int]:
    """Line and column (1-based, as YAML counts them) of ``text[index]``."""
    before = text[:index]
    line = 1 + sum(before.count(char) for char in _LINE_BREAKS) - before.count("\r\n")
    start = 1 + max(before.rfind(char) for char in _LINE_BREAKS)
    bom = line == 1 and before.startswith("\ufeff")  # not a column
    return line, index - start + 1 - bom


def _decode(raw: bytes, name: str) -> str:
    """UTF-8 text with universal newlines (as ``Path.read_text`` reads it), or an error naming the bad byte."""
    for bom, encoding in (
        (b"\xff\xfe\x00\x00", "UTF-32"),
        (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"),
        (b"\xfe\xff", "UTF-16"),
    ):
        if raw.startswith(bom):
            raise InputError([Diagnostic(name, 1, 1, "", f"file is {encoding}, not UTF-8: save it as UTF-8")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8")
        line, column = _position(before, len(before))
        byte = raw[exc.start]
        message = f"file is not UTF-8: byte 0x{byte:02X} ({exc.reason}); save it as UTF-8"
        raise InputError([Diagnostic(name, line, column, "", message)]) from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_yaml(path: Path, *, display_name: str | None = None) -> tuple[object, Positions]:
    """Parse one YAML document; raises :class:`InputError` for unreadable files and syntax errors. A large
    file parsed before, byte for byte, is read back from :mod:`sandbox_infra.parse_cache`."""
    name = display_name or str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError([Diagnostic(name, 1, 1, "", f"cannot read file: {exc.strerror or exc}")]) from exc
    if len(raw) > MAX_FILE_BYTES:
        message = f"file is larger than {MAX_FILE_BYTES // 2**20} MiB ({_LIMIT})"
        raise InputError([Diagnostic(name, 1, 1, "", message)])
    entry = parse_cache.entry(raw)
    cached = parse_cache.get(entry)
    if cached is not None:
        data, values, keys = cached
        return data, Positions(name, values, keys)
    data, positions = load_yaml_text(_decode(raw, name), name)
    parse_cache.put(entry, (data, positions.values, positions.keys))
    return data, positions


def load_yaml_text(text: str, name: str) -> tuple[object, Positions]:
    """Like :func:`load_yaml` for text already in memory (tests, stdin)."""
    positions = Positions(name)
    try:
        nodes = _compose(text)
    except _LimitError as exc:
        raise InputError([exc.diagnostic(name)]) from exc
    except yaml.reader.ReaderError as exc:
        line, col = _position(text, exc.position)
        message = f"character U+{exc.character:04X} is not allowed in YAML (write it as an escape in double quotes)"
        raise InputError([Diagnostic(name, line, col, "", message)]) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise InputError([Diagnostic(name, line, col, "", f"YAML syntax error: {problem}")]) from exc
    errors: list[Diagnostic] = []
    budget = _Budget()
    try:
        if len(nodes) != 1 or nodes[0] is None:
            for node in nodes:  # libyaml composed them all: a broken limit comes first, as with the pure parser
                if node is not None:
                    _count(node, 0, budget)
            what = f"has {len(nodes)} YAML documents (expected one)" if len(nodes) > 1 else "is empty"
            raise InputError([Diagnostic(name, 1, 1, "", f"file {what}")])
        data = _to_python(nodes[0], (), positions, errors, budget)
    except _LimitError as exc:
        raise InputError([exc.diagnostic(name)]) from exc
    if errors:
        raise InputError(errors)
    return data, positions
