"""No input crashes or stalls the roster check: property-based tests over hostile rosters.

Every generated input goes through the front doors a person and the program use: ``python -m sandbox_infra
check`` (in-process, exit code and printed lines), ``check --previous``, and the library's
``load_roster``/``load_yaml_text`` (which may raise :class:`InputError` and nothing else; a roster they
accept must also plan). ``make test`` runs a fast sample (the ``fast`` or, in CI, derandomized ``ci``
hypothesis profile); ``make soak`` runs the ``soak`` profile. Each crash these tests found is pinned by an
explicit case in test_input_limits.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from sandbox_infra import source
from sandbox_infra.plan import build_plan
from sandbox_infra.roster import load_roster
from sandbox_infra.settings import StackSettings
from sandbox_infra.source import InputError, load_yaml, load_yaml_text
from tests.unit import hostile

pytestmark = pytest.mark.soak

SETTINGS = StackSettings(api_key_present=True)
anything = st.one_of(hostile.hostile_rosters(), hostile.token_soup, hostile.pathological())


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory whose stack has an API key, so that a valid roster passes."""
    path = tmp_path_factory.mktemp("fuzz")
    (path / "Pulumi.dev.yaml").write_text(hostile.STACK_FILE)
    return path


def write(project: Path, content: bytes, name: str = "roster.yaml") -> Path:
    path = project / name
    path.write_bytes(content)
    return path


def check(project: Path, content: bytes) -> hostile.Outcome:
    roster = write(project, content)
    outcome = hostile.run_check(roster, project)
    hostile.assert_well_formed(outcome, roster, content)
    if outcome.code == 0:
        # A valid roster lost nothing on the way: every entry of the file is in the summary.
        data, _ = load_yaml(roster)
        assert isinstance(data, dict)
        counts = f"{len(data.get('clients', []))} clients, {len(data.get('freelancers', []))} freelancers"
        assert counts in outcome.out[0], (outcome, data)
    return outcome


@given(hostile.valid_rosters(), st.data())
def test_generated_valid_rosters_pass(project: Path, roster: dict[str, Any], data: st.DataObject) -> None:
    """The generator's baseline: its valid rosters are valid, in every style, or the broken ones prove little."""
    outcome = check(project, hostile.render(roster, data.draw).encode())
    assert outcome.code == 0, outcome


@given(hostile.hostile_rosters())
def test_hostile_rosters_get_diagnostics_not_tracebacks(project: Path, content: bytes) -> None:
    check(project, content)


@given(hostile.token_soup)
def test_yaml_token_soup_gets_diagnostics(project: Path, content: bytes) -> None:
    check(project, content)


@given(hostile.pathological())
def test_pathological_documents_end_with_a_diagnostic(project: Path, content: bytes) -> None:
    check(project, content)


@given(st.binary(max_size=200))
def test_random_bytes_get_diagnostics(project: Path, content: bytes) -> None:
    check(project, content)


@given(anything)
def test_previous_roster_may_be_anything(project: Path, content: bytes) -> None:
    """``check --previous`` reads the base branch's roster leniently: whatever it holds, no traceback."""
    previous = write(project, content, "previous.yaml")
    roster = project / "current.yaml"
    roster.write_text("version: 1\n")
    outcome = hostile.run_check(roster, project, "--previous", str(previous))
    assert outcome.code in (0, 1), outcome
    for printed in outcome.out[:-1] if outcome.code == 0 else outcome.out:
        assert hostile.DIAGNOSTIC.match(printed), printed


@given(
    st.one_of(
        hostile.broken_rosters().map(yaml.safe_dump),
        hostile.hostile_rosters().map(lambda b: b.decode(errors="replace")),
    )
)
def test_library_front_door_raises_only_input_errors(project: Path, text: str) -> None:
    """``load_roster`` (what the Pulumi program calls) raises InputError or returns a roster the plan accepts."""
    path = project / "library.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        with hostile.hang_guard():
            roster = load_roster(path, SETTINGS)
    except InputError as exc:
        assert exc.diagnostics
        return
    build_plan(roster, SETTINGS)


@contextlib.contextmanager
def pure_python_parser() -> Iterator[None]:
    """As if PyYAML had been built without libyaml."""
    saved = source._FAST_LOADER
    source._FAST_LOADER = None
    try:
        yield
    finally:
        source._FAST_LOADER = saved


def outcome_of(text: str) -> object:
    try:
        with hostile.hang_guard():
            data, positions = load_yaml_text(text, "roster.yaml")
    except InputError as exc:
        return [str(d) for d in exc.diagnostics]
    return data, positions.values, positions.keys


@given(anything)
def test_both_parsers_give_identical_results(content: bytes) -> None:
    """libyaml (when PyYAML has it) and the pure-Python parser: the same data, positions and diagnostics."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        assume(False)
        return
    fast = outcome_of(text)
    with pure_python_parser():
        pure = outcome_of(text)
    assert fast == pure
