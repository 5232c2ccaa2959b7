"""The parse cache (sandbox_infra/parse_cache.py): a roster parsed once is read back, never wrongly.

Each case points the cache at a directory of its own and lowers the size threshold, so the example roster
is cached; a hit is proven by making the parser itself fail.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sandbox_infra import parse_cache, source
from sandbox_infra.source import InputError, load_yaml
from tests.conftest import REPO

ROSTER = (REPO / "roster.yaml").read_bytes()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache" / "rosters"
    monkeypatch.setenv(parse_cache.ENV, str(where))
    monkeypatch.setattr(parse_cache, "MIN_BYTES", 1)
    return where


def _no_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str) -> None:
        raise AssertionError("parsed again: the cache was not used")

    monkeypatch.setattr(source, "_compose", refuse)


def _roster(tmp_path: Path, raw: bytes = ROSTER, name: str = "roster.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def test_a_roster_read_twice_is_parsed_once_with_the_same_values_and_positions(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _roster(tmp_path)
    data, positions = load_yaml(path, display_name="first.yaml")
    assert len(list(cache.glob("*.marshal"))) == 1
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    _no_parser(monkeypatch)
    again, again_positions = load_yaml(path, display_name="second.yaml")
    assert again == data
    assert (again_positions.values, again_positions.keys) == (positions.values, positions.keys)
    assert again_positions.file == "second.yaml"  # diagnostics name the file as it is read now


def test_one_changed_byte_is_parsed_again(cache: Path, tmp_path: Path) -> None:
    load_yaml(_roster(tmp_path))
    edited = ROSTER.replace(b"name: Globex", b"name: Globux")
    data, _ = load_yaml(_roster(tmp_path, edited, "edited.yaml"))
    assert isinstance(data, dict)
    assert data["clients"][1]["name"] == "Globux"
    assert len(list(cache.glob("*.marshal"))) == 2


def test_a_broken_roster_is_never_cached_and_reports_its_error_each_time(cache: Path, tmp_path: Path) -> None:
    path = _roster(tmp_path, ROSTER + b"clients: []\n")  # a duplicate key
    for _ in range(2):
        with pytest.raises(InputError, match="duplicate"):
            load_yaml(path)
    assert not cache.exists() or not list(cache.glob("*.marshal"))


@pytest.mark.parametrize("garbage", [b"", b"\x00\x01not marshal", b"\xe9" * 64])
def test_a_corrupt_entry_is_a_miss(cache: Path, tmp_path: Path, garbage: bytes) -> None:
    path = _roster(tmp_path)
    expected, _ = load_yaml(path)
    (entry,) = cache.glob("*.marshal")
    entry.write_bytes(garbage)
    data, _ = load_yaml(path)
    assert data == expected


def test_an_entry_of_the_wrong_shape_is_a_miss(cache: Path, tmp_path: Path) -> None:
    import marshal

    path = _roster(tmp_path)
    expected, _ = load_yaml(path)
    (entry,) = cache.glob("*.marshal")
    entry.write_bytes(marshal.dumps(("data", ["not", "a", "dict"], {})))
    assert load_yaml(path)[0] == expected


def test_a_directory_others_can_write_is_not_read(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _roster(tmp_path)
    load_yaml(path)
    os.chmod(cache, 0o777)
    (entry,) = cache.glob("*.marshal")
    entry.write_bytes(entry.read_bytes())  # as anyone could have
    _no_parser(monkeypatch)
    with pytest.raises(AssertionError, match="parsed again"):
        load_yaml(path)


def test_a_cache_that_cannot_be_written_is_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(parse_cache.ENV, str(blocker / "rosters"))
    monkeypatch.setattr(parse_cache, "MIN_BYTES", 1)
    data, _ = load_yaml(_roster(tmp_path))
    assert isinstance(data, dict)


def test_off_and_small_files_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = tmp_path / "rosters"
    monkeypatch.setenv(parse_cache.ENV, "off")
    monkeypatch.setattr(parse_cache, "MIN_BYTES", 1)
    load_yaml(_roster(tmp_path))
    monkeypatch.setenv(parse_cache.ENV, str(where))
    monkeypatch.setattr(parse_cache, "MIN_BYTES", len(ROSTER) + 1)
    load_yaml(_roster(tmp_path))
    assert not where.exists()


def test_values_marshal_cannot_hold_are_parsed_every_time(cache: Path, tmp_path: Path) -> None:
    data, _ = load_yaml(_roster(tmp_path, ROSTER + b"since: 2026-12-02\n"))  # a YAML timestamp: a date
    assert isinstance(data, dict)
    assert str(data["since"]) == "2026-12-02"
    assert not list(cache.glob("*.marshal"))


def test_only_the_most_recently_used_entries_are_kept(cache: Path, tmp_path: Path) -> None:
    for i in range(parse_cache.ENTRIES + 3):
        load_yaml(_roster(tmp_path, ROSTER + f"# {i}\n".encode(), f"r{i}.yaml"))
    assert len(list(cache.glob("*.marshal"))) == parse_cache.ENTRIES
    assert not list(cache.glob(".tmp-*"))


def test_prefetch_parses_in_a_child_so_the_read_after_it_is_a_hit(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _roster(tmp_path)
    with parse_cache.prefetch(path, load_yaml):
        pass  # what `plan --base` does here: read the base
    _no_parser(monkeypatch)
    data, positions = load_yaml(path)
    assert isinstance(data, dict)
    assert positions.values[("clients", 0, "name")] == (8, 11)  # roster.yaml line 8: "    name: Acme Corp"


def test_prefetch_of_a_broken_or_missing_file_changes_nothing(cache: Path, tmp_path: Path) -> None:
    broken = _roster(tmp_path, b"clients: [\n")
    with parse_cache.prefetch(broken, load_yaml), parse_cache.prefetch(tmp_path / "missing.yaml", load_yaml):
        pass
    with pytest.raises(InputError, match="YAML syntax error"):
        load_yaml(broken)
    assert not cache.exists() or not list(cache.glob("*.marshal"))
