"""Hostile roster inputs for the property-based tests (tests/unit/test_input_fuzz.py), and the harness that
runs the check on them and states what every outcome must look like.

Three families of inputs:
- *structured*: a valid roster, then one or more edits of its data (a field missing, of a wrong type,
  nested wrongly, extra, duplicated), rendered in block or flow style;
- *textual*: that rendered text edited as text (lines duplicated, dropped or truncated, anchors and
  aliases, merge keys, tags, CRLF, a byte-order mark, control characters, bytes that are not UTF-8);
- *pathological*: documents built to exhaust a parser (deep nesting, alias-expansion bombs, recursive
  aliases, huge scalars, many nodes, many documents), around and beyond the limits of
  sandbox_infra/limits.py.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from hypothesis import strategies as st

from sandbox_infra.cli import main

TIERS = ("basic", "standard", "premium", "custom")
STATES = ("active", "suspended", "archived")
IMAGE = "2026.11.20@sha256:162d6576c6de1cbb4d0e267314fe9f3093149a56641fa99ffc968d444a6f879c"
STACK_FILE = "config:\n  sandbox-infra:geminiApiKey: {secure: x}\n"
HANG = 60
"""Seconds after which one check counts as a hang (a normal one takes milliseconds): the example fails
instead of stalling the test run. Not a performance assertion: bench/inputs.py measures times."""

# --- structured rosters -------------------------------------------------------------------------------

uuids = st.uuids().map(str)


@st.composite
def valid_rosters(draw: st.DrawFn) -> dict[str, Any]:
    """A roster that passes the check (given a stack with an API key)."""
    clients = [
        {"id": draw(uuids), "name": draw(st.text(min_size=1, max_size=20))} for _ in range(draw(st.integers(1, 3)))
    ]
    client_ids = [c["id"] for c in clients]
    if len(set(client_ids)) != len(client_ids):
        clients = clients[:1]
        client_ids = client_ids[:1]
    freelancers = []
    for i in range(draw(st.integers(0, 4))):
        sandboxes = []
        for client in draw(st.lists(st.sampled_from(client_ids), unique=True, max_size=len(client_ids))):
            tier = draw(st.sampled_from(TIERS))
            sandbox: dict[str, Any] = {"client": client, "tier": tier}
            if tier == "custom":
                sandbox["resources"] = {
                    "requests": {"cpu": "1", "memory": "2Gi"},
                    "limits": {"cpu": draw(st.sampled_from(["2", 4, "2500m"])), "memory": "4Gi"},
                }
            if tier in ("premium", "custom") and draw(st.booleans()):
                sandbox["gpu"] = True
            if draw(st.booleans()):
                sandbox["state"] = draw(st.sampled_from(STATES))
            if draw(st.booleans()):
                sandbox["storage"] = {"workspace": "20Gi", "home": "5Gi"}
            if draw(st.booleans()):
                sandbox["image"] = IMAGE
            sandboxes.append(sandbox)
        freelancer: dict[str, Any] = {"id": draw(uuids), "email": f"person{i}@example.com", "sandboxes": sandboxes}
        if draw(st.booleans()):
            freelancer["name"] = draw(st.text(max_size=20))
        freelancers.append(freelancer)
    return {"version": 1, "clients": clients, "freelancers": freelancers}


LONG = {"name": 201, "email": 255, "scalar": 4097, "digits": 5000}
"""Lengths just past a limit (sandbox_infra/limits.py) or past Python's integer conversion."""
scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet=string.printable, max_size=30),
    st.sampled_from(
        ["", "~", "null", "yes", "no", "on", "0x1F", "0o17", "1_000", "1e999", "2020-02-30", "12:30:00", "="]
    ),
    st.sampled_from(["<<", "latest", "gold", "custom", "archived", "1Gi", "1e999999999", "-0", "0.0001m", "8Ei"]),
    st.sampled_from(["\u202e\u2028\x85", "\ud7ff\ue000\U0010ffff", "\x1b[31m", "a\nb"]),
    st.sampled_from(sorted(LONG)).map(lambda what: ("9" if what == "digits" else "a") * LONG[what]),
    st.integers(1, 300).map(lambda n: "x@" + "y" * n + ".com"),
    uuids,
)
junk: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
KEYS = (
    "version", "clients", "freelancers", "id", "name", "email", "sandboxes", "client", "tier", "resources",
    "requests", "limits", "cpu", "memory", "gpu", "image", "storage", "workspace", "home", "state", "stack",
    "tierr", "Tier", "ID", " id", "sandbox", "",
)  # fmt: skip


def _containers(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, (dict, list)):
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            yield from _containers(value, (*path, key))


@st.composite
def broken_rosters(draw: st.DrawFn) -> Any:
    """A valid roster with 1-4 edits: a key removed, a value replaced by junk (a wrong type), a value wrapped
    in a list or mapping (nested wrongly), a key added (extra), a list entry copied (duplicated ids)."""
    data: Any = draw(valid_rosters())
    for _ in range(draw(st.integers(1, 4))):
        containers = list(_containers(data))
        if not containers:
            break  # the whole roster was replaced by a scalar
        _, container = draw(st.sampled_from(containers))
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        action = draw(st.sampled_from(["delete", "replace", "wrap", "extra", "duplicate", "root"]))
        if action == "root":
            data = draw(st.one_of(junk, st.just([data]), st.just({"roster": data})))
            continue
        if action == "extra" or not keys:
            if isinstance(container, dict):
                container[draw(st.sampled_from(KEYS) | st.text(max_size=10))] = draw(junk)
            else:
                container.append(draw(junk))
            continue
        key = draw(st.sampled_from(keys))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = draw(junk)
        elif action == "wrap":
            container[key] = draw(st.sampled_from([[container[key]], {"value": container[key]}, [[container[key]]]]))
        elif isinstance(container, list):
            container.append(container[key])
        else:
            container[key] = container[key]  # duplicated at the text level by text edits
    return data


def render(data: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """YAML text of ``data`` in a drawn style (block, flow, or mixed; ASCII or unicode)."""
    return yaml.safe_dump(
        data,
        default_flow_style=draw(st.sampled_from([False, True, None])),
        allow_unicode=draw(st.booleans()),
        width=draw(st.sampled_from([80, 20, 10_000])),
        sort_keys=False,
    )


# --- text edits ---------------------------------------------------------------------------------------

TAGS = (
    "!!str", "!!int", "!!float", "!!bool", "!!null", "!!binary", "!!timestamp", "!!set", "!!omap", "!!pairs",
    "!!seq", "!!map", "!!merge", "!!value", "!!python/object:os.system", "!!python/name:os.system", "!foo", "!",
    "!<tag:yaml.org,2002:str>", "!<!>", "!e!x",
)  # fmt: skip
SNIPPETS = (
    "&a ", "*a", "&b ", "*b", "<<: *a\n", "<<: [*a, *b]\n", "<<: {x: 1}\n", "? ", ": ", "- ", "[", "]", "{", "}",
    ",", "'", '"', "|", ">", "#", "%YAML 1.1\n", "%TAG ! tag:example.com,2000:\n", "---\n", "...\n", "\t", "\n",
    "\r\n", "\r", "\x85", "\u2028", "\ufeff", "\x00", "\x07", "\x1b[31m", "\x7f", "\x9f", "\\", "@", "`", "%", "!",
    "é", "😀", "\u202e",
)  # fmt: skip


@st.composite
def edited_texts(draw: st.DrawFn, text: str) -> bytes:
    """``text`` after 1-5 textual edits, as bytes (some edits produce bytes that are not UTF-8)."""
    lines = text.splitlines(keepends=True) or [""]
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(
            st.sampled_from(["dup", "drop", "insert", "tag", "anchor", "merge", "indent", "truncate", "swap"])
        )
        line = lines[i]
        if action == "dup":
            lines.insert(i, line)
        elif action == "drop" and len(lines) > 1:
            del lines[i]
        elif action == "insert":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.sampled_from(SNIPPETS)) + line[at:]
        elif action == "tag":
            lines[i] = re.sub(r"(: |- )", lambda m: m.group(1) + draw(st.sampled_from(TAGS)) + " ", line, count=1)
        elif action == "anchor":
            lines[i] = re.sub(r"(: |- )", r"\1&a ", line, count=1)
            j = draw(st.integers(0, len(lines) - 1))
            lines[j] = re.sub(r"(: |- ).*", r"\1*a", lines[j], count=1)
        elif action == "merge":
            indent = len(line) - len(line.lstrip(" -"))
            lines.insert(i + 1, " " * indent + draw(st.sampled_from(["<<: *a\n", "<<: {tier: basic}\n", "<<: [*a]\n"])))
        elif action == "indent":
            lines[i] = " " * draw(st.integers(0, 6)) + line.lstrip()
        elif action == "truncate":
            lines = lines[: i + 1]
            lines[i] = line[: draw(st.integers(0, len(line)))]
        elif action == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], line
    out = "".join(lines)
    newline = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    out = out.replace("\n", newline)
    data = out.encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(data)))
        data = (
            data[:at]
            + draw(st.sampled_from([b"\xff", b"\xe9", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]))
            + data[at:]
        )
    return data


@st.composite
def hostile_rosters(draw: st.DrawFn) -> bytes:
    """A broken roster, rendered, and perhaps edited as text."""
    text = render(draw(broken_rosters()), draw)
    if draw(st.booleans()):
        return text.encode("utf-8", errors="surrogatepass")
    return draw(edited_texts(text))


token_soup: st.SearchStrategy[bytes] = st.lists(
    st.one_of(
        st.sampled_from(SNIPPETS),
        st.sampled_from(TAGS),
        st.sampled_from(KEYS).map(lambda k: k + ": "),
        st.text(alphabet="abc01 -:", max_size=5),
        st.sampled_from(["  ", "    ", "\n  ", "\n- ", "\n    - "]),
    ),
    max_size=60,
).map(lambda parts: "".join(parts).encode("utf-8", errors="surrogatepass"))
"""YAML-ish text from a bag of tokens: mostly syntax errors, which take every error path of both parsers."""


# --- pathological documents --------------------------------------------------------------------------


def deep_flow(depth: int) -> str:
    return "version: 1\nclients: " + "[" * depth + "]" * depth + "\n"


def deep_block(depth: int) -> str:
    return "version: 1\nclients:\n" + "".join(" " * (2 * i + 2) + "- \n" for i in range(depth)).rstrip() + " x\n"


def deep_compact(depth: int) -> str:
    return "version: 1\nclients:\n  " + "- " * depth + "x\n"


def deep_mapping(depth: int) -> str:
    return "version: 1\nclients: " + "{a: " * depth + "1" + "}" * depth + "\n"


def alias_bomb(levels: int, fanout: int) -> str:
    """Each level is a list of ``fanout`` aliases of the one below: fanout ** levels nodes once expanded."""
    lines = ["version: 1", f"l0: &l0 [{', '.join(['lol'] * fanout)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fanout)}]")
    lines.append(f"clients: *l{levels - 1}")
    return "\n".join(lines) + "\n"


def recursive_alias() -> str:
    return "version: 1\nclients: &a [*a]\n"


def many_nodes(count: int) -> str:
    return "version: 1\nclients: [" + "1," * count + "1]\n"


def many_documents(count: int) -> str:
    return "version: 1\n" + "---\n" * count


def huge_scalar(length: int, key: str = "name") -> str:
    return f"version: 1\nclients:\n  - id: 0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11\n    {key}: {'x' * length}\n"


PATHOLOGICAL: dict[str, Callable[[int], str]] = {
    "deep flow": deep_flow,
    "deep block": deep_block,
    "deep compact": deep_compact,
    "deep mapping": deep_mapping,
    "alias bomb": lambda n: alias_bomb(max(2, n // 10), 10),
    "many nodes": lambda n: many_nodes(n * 100),
    "many documents": lambda n: many_documents(n * 10),
    "huge scalar": lambda n: huge_scalar(n * 20),
}


@st.composite
def pathological(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(sorted(PATHOLOGICAL)))
    text = PATHOLOGICAL[kind](draw(st.integers(1, 300)))
    if draw(st.booleans()):
        text = text.replace("version: 1", "version: 1\nname: é")  # the pure-Python parser's path
    return text.encode()


# --- the harness -------------------------------------------------------------------------------------

LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
"""What YAML counts as a line break."""
DIAGNOSTIC = re.compile(r"^(?P<file>.+?):(?P<line>[0-9]+):(?P<col>[0-9]+): (?P<rest>.+)$")


@dataclass(frozen=True)
class Outcome:
    code: int
    out: list[str]
    err: str


class HangError(Exception):
    """One check ran for longer than :data:`HANG` seconds."""


@contextlib.contextmanager
def hang_guard(seconds: int = HANG) -> Iterator[None]:
    """Turn a hang into a failure: SIGALRM interrupts the check after ``seconds``."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise HangError(f"the check ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_check(roster: Path, project_dir: Path, *extra: str) -> Outcome:
    """``python -m sandbox_infra check`` in-process; an exception (a traceback) propagates and fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with hang_guard(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(roster), "--project-dir", str(project_dir), *extra])
    return Outcome(code, out.getvalue().splitlines(), err.getvalue())


def assert_well_formed(outcome: Outcome, roster: Path, content: bytes) -> None:
    """Exit 0 with the one-line summary, or exit 1 with diagnostics that each name this file and a line
    and column inside it, one per line."""
    assert outcome.code in (0, 1), outcome
    if outcome.code == 0:
        assert len(outcome.out) == 1 and outcome.out[0].startswith(f"{roster}: valid: "), outcome
        return
    assert outcome.out, outcome
    lines = len(LINE_BREAK.findall(content.decode("utf-8", errors="replace"))) + 1
    for printed in outcome.out:
        match = DIAGNOSTIC.match(printed)
        assert match, f"not FILE:LINE:COL: MESSAGE: {printed!r}"
        assert match["file"] == str(roster), printed
        assert 1 <= int(match["line"]) <= lines + 1, (printed, lines)
        assert int(match["col"]) >= 1, printed
        assert printed.isprintable(), f"control characters in a diagnostic: {printed!r}"
