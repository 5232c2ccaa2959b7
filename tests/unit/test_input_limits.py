"""Every crash and stall the input fuzzers found (tests/unit/test_input_fuzz.py), pinned as an explicit case,
and the limits of sandbox_infra/limits.py, each broken once, through ``python -m sandbox_infra check``.

Unguarded, each of these ends in a Python traceback (or, for the alias bomb, runs until killed); the check
makes each one diagnostic naming the file, line and column, and exit code 1. "Unguarded:" notes say what
the case would otherwise do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_infra import limits, source
from sandbox_infra.cli import main
from sandbox_infra.plan import build_plan
from sandbox_infra.roster import load_roster
from sandbox_infra.settings import StackSettings
from sandbox_infra.source import InputError, load_yaml_text
from tests.conftest import REPO
from tests.unit import hostile
from tests.unit.test_input_fuzz import pure_python_parser

pytestmark = pytest.mark.soak

ACME = "0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11"
ADA = "e0d60578-9d7a-46c3-89f8-a131aaa11434"
SANDBOX = f"""\
version: 1
clients: [{{id: {ACME}, name: Acme}}]
freelancers:
  - id: {ADA}
    email: ada@example.com
    sandboxes:
      - client: {ACME}
"""
# Line 8 is the first line after SANDBOX, indented by 8 for the sandbox's keys.


def check(tmp_path: Path, content: str | bytes, *extra: str) -> tuple[int, list[str]]:
    """Run `check` in-process on ``content``; return the exit code and the printed lines, file names shortened."""
    roster = tmp_path / "roster.yaml"
    roster.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "Pulumi.dev.yaml").write_text(hostile.STACK_FILE)
    outcome = hostile.run_check(roster, tmp_path, *extra)
    hostile.assert_well_formed(outcome, roster, roster.read_bytes())
    return outcome.code, [line.replace(str(roster), "roster.yaml") for line in outcome.out]


def both_parsers(text: str) -> list[str]:
    """The diagnostics of ``text`` with libyaml (when present) and the pure-Python parser, asserted equal."""
    results = []
    for pure in (False, True):
        with pure_python_parser() if pure else hostile.hang_guard():
            try:
                load_yaml_text(text, "roster.yaml")
            except InputError as exc:
                results.append([str(d) for d in exc.diagnostics])
            else:
                results.append([])
    assert results[0] == results[1]
    return results[0]


# --- YAML features a roster does not hold ------------------------------------------------------------


def test_merge_key_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    """Unguarded: ConstructorError (no constructor for tag:yaml.org,2002:merge)."""
    text = f"version: 1\ndefaults: &d {{name: Acme}}\nclients:\n  - <<: *d\n    id: {ACME}\n"
    code, out = check(tmp_path, text)
    assert code == 1
    assert out == ["roster.yaml:4:5: clients[0]: merge keys ('<<') are not supported in a roster: write the keys out"]


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/object:os.system 1", "!!python/object:os.system"),  # unguarded: ConstructorError
        ("!foo 1", "!foo"),  # unguarded: ConstructorError
        ("!!binary aGVsbG8=", "!!binary"),  # unguarded: accepted as bytes
        ("!!set {a, b}", "!!set"),  # unguarded: accepted as a mapping
        ("!!omap [a: 1]", "!!omap"),  # unguarded: accepted as a list
        ("!!map 1", "!!map"),  # unguarded: ConstructorError
        ("=", "!!value"),  # a plain '=' resolves to YAML 1.1's value tag; unguarded: ConstructorError
    ],
)
def test_unsupported_tags(tmp_path: Path, value: str, tag: str) -> None:
    code, out = check(tmp_path, f"version: {value}\n")
    assert code == 1
    assert out == [
        f"roster.yaml:1:10: version: unsupported tag '{tag}': a roster holds only strings, numbers, true/false, "
        "null, lists and mappings"
    ]


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("!!int abc", "'abc' as an integer"),  # unguarded: ValueError
        ("!!int ''", "'' as an integer"),  # unguarded: IndexError
        ("!!bool maybe", "'maybe' as true or false"),  # unguarded: KeyError
        ("!!float x", "'x' as a number"),  # unguarded: ValueError
        ("!!timestamp 1", "'1' as a date"),  # unguarded: AttributeError
        ("2020-02-30", "'2020-02-30' as a date"),  # an implicit date that does not exist; unguarded: ValueError
        ("2001-12-14t21:59:43.10-99:00", "'2001-12-14t21:59:43.10-99:00' as a date"),  # unguarded: ValueError
    ],
)
def test_unreadable_scalars(tmp_path: Path, value: str, what: str) -> None:
    code, out = check(tmp_path, f"version: 1\nclients: [{{id: {ACME}, name: {value}}}]\n")
    assert code == 1
    assert out == [f"roster.yaml:2:60: clients[0].name: cannot read {what} (quote it if it is a string)"]


def test_integer_longer_than_python_converts(tmp_path: Path) -> None:
    """Unguarded: ValueError (exceeds the limit of 4300 digits for integer string conversion)."""
    code, out = check(tmp_path, "version: " + "9" * 5000 + "\n")
    assert code == 1
    assert out == ["roster.yaml:1:10: version: 5,000 characters long (at most 4,096: docs/roster.md#limits)"]


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x9f", "\ufffe"])
def test_control_character(tmp_path: Path, char: str) -> None:
    """Unguarded: ReaderError, which is not a MarkedYAMLError, so it escapes as a traceback."""
    code, out = check(tmp_path, f"version: 1\nclients: []\nfreelancers: [x{char}]\n")
    assert code == 1
    assert out == [
        f"roster.yaml:3:16: character U+{ord(char):04X} is not allowed in YAML (write it as an escape in double quotes)"
    ]


def test_control_characters_in_keys_stay_escaped(tmp_path: Path) -> None:
    """A quoted key may hold anything; the diagnostic stays one printable line (unguarded: a raw newline and ESC)."""
    code, out = check(tmp_path, 'version: 1\n"a\\nb\\e[31m": 1\n')
    assert code == 1
    assert out == [
        "roster.yaml:2:1: ['a\\nb\\x1b[31m']: unknown key 'a\\nb\\x1b[31m' (expected one of version, clients, freelancers)"
    ]


# --- encodings and line ends ---------------------------------------------------------------------------


def test_not_utf8_names_the_byte_and_its_position(tmp_path: Path) -> None:
    code, out = check(tmp_path, b"version: 1\nclients: [{name: caf\xe9}]\n")
    assert code == 1
    assert out == ["roster.yaml:2:21: file is not UTF-8: byte 0xE9 (invalid continuation byte); save it as UTF-8"]


def test_utf16_is_named(tmp_path: Path) -> None:
    code, out = check(tmp_path, "version: 1\n".encode("utf-16"))
    assert code == 1
    assert out == ["roster.yaml:1:1: file is UTF-16, not UTF-8: save it as UTF-8"]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("bom", ["", "\ufeff"])
def test_bom_and_line_ends_do_not_move_positions(tmp_path: Path, newline: str, bom: str) -> None:
    text = bom + (SANDBOX + "        tier: gold\n").replace("\n", newline)
    code, out = check(tmp_path, text)
    assert code == 1
    assert out == [
        "roster.yaml:8:15: freelancers[0].sandboxes[0].tier: unknown tier 'gold' (expected one of basic, standard, premium, custom)"
    ]


# --- aliases, nesting and size: the limits ---------------------------------------------------------------


def test_recursive_alias(tmp_path: Path) -> None:
    """Unguarded: RecursionError."""
    code, out = check(tmp_path, hostile.recursive_alias())
    assert code == 1
    assert out == ["roster.yaml:2:14: alias *a repeats a collection that contains it"]


@pytest.mark.parametrize(
    ("document", "position"),
    [
        (hostile.deep_flow(5000), "2:42"),  # unguarded: RecursionError
        (hostile.deep_flow(limits.MAX_DEPTH + 1), "2:42"),
        (hostile.deep_block(100), "35:67"),
        (hostile.deep_compact(100), "3:67"),
        (hostile.deep_mapping(100), "2:135"),  # the key of the 32nd mapping
    ],
)
def test_nesting_deeper_than_the_limit(document: str, position: str) -> None:
    assert both_parsers(document) == [
        f"roster.yaml:{position}: nested more than 32 levels deep (limit: docs/roster.md#limits)"
    ]


def test_nesting_at_the_limit_is_read() -> None:
    assert both_parsers(hostile.deep_flow(limits.MAX_DEPTH)) == []


def test_alias_bomb_stops_at_the_node_limit(tmp_path: Path) -> None:
    """Nine levels of nine aliases: 387 million nodes once expanded. Unguarded: runs until killed (hours, gigabytes)."""
    code, out = check(tmp_path, hostile.alias_bomb(9, 9))
    assert code == 1
    assert out == [
        "roster.yaml:8:10: more than 1,000,000 YAML nodes, counting what aliases repeat (limit: docs/roster.md#limits)"
    ]


def test_alias_count_limit(tmp_path: Path) -> None:
    text = "version: 1\nx: &a 1\nclients: [" + ", ".join(["*a"] * (limits.MAX_ALIASES + 1)) + "]\n"
    code, out = check(tmp_path, text)
    assert code == 1
    assert out == [
        f"roster.yaml:3:{11 + 4 * limits.MAX_ALIASES}: more than 10,000 aliases (limit: docs/roster.md#limits)"
    ]


@pytest.fixture
def node_limit(monkeypatch: pytest.MonkeyPatch, soak: bool) -> int:
    """The node limit, lowered to 1,000 outside ``make soak`` (the pure-Python parser takes a minute to
    reach a million nodes on a loaded machine)."""
    if soak:
        return limits.MAX_NODES
    monkeypatch.setattr(source, "MAX_NODES", 1000)
    return 1000


def test_node_limit_is_the_same_for_both_parsers(node_limit: int) -> None:
    """libyaml composes the whole document and the walk stops at the limit; the pure-Python parser stops
    while composing: the same node is named either way."""
    assert both_parsers(hostile.many_nodes(node_limit)) == [
        f"roster.yaml:2:{11 + 2 * (node_limit - 5)}: more than {node_limit:,} YAML nodes, counting what aliases "
        "repeat (limit: docs/roster.md#limits)"
    ]


def test_node_limit_counts_every_document(node_limit: int) -> None:
    text = "version: 1\n---\n" + hostile.many_nodes(node_limit)
    assert both_parsers(text) == [
        f"roster.yaml:4:{11 + 2 * (node_limit - 8)}: more than {node_limit:,} YAML nodes, counting what aliases "
        "repeat (limit: docs/roster.md#limits)"
    ]


def test_node_limit_counts_the_keys_and_values_not_converted(node_limit: int) -> None:
    """A duplicate key's value is not read, but its nodes count, as the pure-Python parser counts them."""
    text = "version: 1\nversion: " + hostile.many_nodes(node_limit).split("clients: ")[1]
    assert both_parsers(text) == [
        f"roster.yaml:2:{11 + 2 * (node_limit - 5)}: more than {node_limit:,} YAML nodes, counting what aliases "
        "repeat (limit: docs/roster.md#limits)"
    ]


def test_file_size_limit(tmp_path: Path) -> None:
    code, out = check(tmp_path, "version: 1\n" + "#" * limits.MAX_FILE_BYTES)
    assert code == 1
    assert out == ["roster.yaml:1:1: file is larger than 8 MiB (limit: docs/roster.md#limits)"]


def test_scalar_length_limit(tmp_path: Path) -> None:
    code, out = check(tmp_path, hostile.huge_scalar(limits.MAX_SCALAR_CHARS + 1))
    assert code == 1
    assert out == ["roster.yaml:4:11: clients[0].name: 4,097 characters long (at most 4,096: docs/roster.md#limits)"]


def test_email_fits_its_database_column(tmp_path: Path) -> None:
    """Names are checked in test_database.py; an email is a pattern and a length."""
    long_email = "e" * (limits.EMAIL_MAX - len("@example.com") + 1) + "@example.com"
    code, out = check(tmp_path, SANDBOX.replace("ada@example.com", long_email) + "        tier: basic\n")
    assert code == 1
    assert out == [
        "roster.yaml:5:12: freelancers[0].email: 256 characters, more than the 255 the platform database's column holds"
    ]


# --- validation ------------------------------------------------------------------------------------------


def test_sandboxes_that_are_not_a_list(tmp_path: Path) -> None:
    """Unguarded: the freelancer is silently left out of a roster reported valid."""
    code, out = check(tmp_path, SANDBOX.replace("    sandboxes:\n      - client: " + ACME, "    sandboxes: abc"))
    assert code == 1
    assert out == ["roster.yaml:6:16: freelancers[0].sandboxes: expected a list, got str"]


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        # Unguarded: decimal.Overflow.
        ("{cpu: '1', memory: 1e999999999}", "'1e999999999' is not a Kubernetes quantity (exponent out of range)"),
        # Unguarded: a valid roster whose plan failed (a 100,000-digit number has no str()).
        ("{cpu: '1e99999', memory: 1Gi}", "'1e99999' is not a Kubernetes quantity (exponent out of range)"),
        ("{cpu: '1', memory: 8Ei}", "'8Ei' is out of range for a Kubernetes quantity (at most 2^63-1)"),
    ],
)
def test_quantities_out_of_range(tmp_path: Path, resources: str, message: str) -> None:
    text = (
        SANDBOX
        + f"        tier: custom\n        resources: {{requests: {{cpu: '1', memory: 1Gi}}, limits: {resources}}}\n"
    )
    code, out = check(tmp_path, text)
    assert code == 1
    assert len(out) == 1 and out[0].endswith(message), out


def test_previous_roster_of_the_wrong_shape(tmp_path: Path) -> None:
    """Unguarded: TypeError ('int' object is not iterable) in check --previous."""
    previous = tmp_path / "previous.yaml"
    previous.write_text("version: 1\nclients: 5\nfreelancers: [{sandboxes: 7}]\n")
    code, out = check(tmp_path, "version: 1\n", "--previous", str(previous))
    assert (code, out) == (
        0,
        ["roster.yaml: valid: 0 clients, 0 freelancers, 0 sandboxes (none; tiers: none; 0 with GPU)"],
    )


def test_library_front_door(tmp_path: Path) -> None:
    """load_roster (the Pulumi program's) raises InputError for the alias bomb; a roster at the limits plans."""
    path = tmp_path / "roster.yaml"
    path.write_text(hostile.alias_bomb(9, 9))
    with pytest.raises(InputError):
        load_roster(path, StackSettings(api_key_present=True))
    path.write_text(SANDBOX.replace("Acme", "A" * limits.NAME_MAX) + "        tier: basic\n")
    settings = StackSettings(api_key_present=True)
    assert build_plan(load_roster(path, settings), settings).slices


# --- the real front door, in a process of its own ------------------------------------------------------


WORST = {
    "alias bomb": hostile.alias_bomb(9, 9),
    "deep nesting": hostile.deep_flow(100_000),
    "recursive alias": hostile.recursive_alias(),
    "a million nodes": hostile.many_nodes(limits.MAX_NODES),  # make soak only: 20 s on a loaded machine
}


@pytest.mark.parametrize("name", list(WORST))
def test_worst_inputs_through_the_command(tmp_path: Path, name: str, soak: bool) -> None:
    """``python -m sandbox_infra check`` as CI runs it: exit 1, diagnostics only, no traceback; the process is
    killed after a minute and limited to 2 GiB, so a hang or a blow-up fails instead of stalling the run."""
    if name == "a million nodes" and not soak:
        pytest.skip("make soak")
    roster = tmp_path / "roster.yaml"
    roster.write_text(WORST[name])
    memory = 2 * 1024**3
    result = subprocess.run(
        [sys.executable, "-m", "sandbox_infra", "check", str(roster), "--project-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=hostile.HANG,
        preexec_fn=lambda: __import__("resource").setrlimit(__import__("resource").RLIMIT_AS, (memory, memory)),
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr == f"{roster}: 1 error(s)\n"
    assert hostile.DIAGNOSTIC.match(result.stdout.strip()), result.stdout


def test_example_roster_still_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(REPO / "roster.yaml"), "--project-dir", str(REPO)]) == 0
