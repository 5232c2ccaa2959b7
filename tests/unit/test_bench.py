"""The benchmark's own logic: the roster generator, the summary parsers, the sampler and the report.

The measurements themselves run with `make bench`; these tests make sure they measure what the scale
targets are about (a valid roster of the right shape) and that their numbers are read and reported right.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from bench import measure, report, roster, suite
from sandbox_infra.roster import SandboxState, load_roster
from sandbox_infra.settings import StackSettings


def test_generator_is_deterministic_and_grows_by_one() -> None:
    first = roster.generate(100, variant=0x0042)
    assert first == roster.generate(100, variant=0x0042)
    assert first != roster.generate(100, variant=0x0043)
    bigger = roster.add_freelancer(first, variant=0x0042)
    assert bigger["freelancers"][:100] == first["freelancers"]
    assert len(bigger["freelancers"]) == 101
    assert bigger["freelancers"][100] == roster.generate(101, variant=0x0042)["freelancers"][100]


@pytest.mark.parametrize("n", [10, 1000])
def test_generated_roster_is_valid_and_has_the_asked_for_mix(n: int, tmp_path: Path) -> None:
    path = roster.write(roster.generate(n, variant=0x0001), tmp_path / "roster.yaml")
    loaded = load_roster(path, StackSettings(api_key_present=True))  # bench stacks set a dummy key
    assert len(loaded.freelancers) == n
    assert len(loaded.clients) == roster.client_count(n)
    sandboxes = [s for f in loaded.freelancers for s in f.sandboxes]
    assert set(Counter(s.tier for s in sandboxes)) == set(roster.TIERS)
    assert any(len(f.sandboxes) == 2 for f in loaded.freelancers)
    assert any(s.state is SandboxState.SUSPENDED for s in sandboxes)
    assert sum(1 for s in sandboxes if s.gpu) == 1  # the local cluster has 8 GPUs for every stack at once
    assert all(str(c.id).startswith(roster.CLIENT_PREFIX) for c in loaded.clients)


PREVIEW_OUTPUT = """\
Previewing update (bench-up-100):
...
Resources:
    + 6 to create
    ~ 1 to update
    7 changes. 719 unchanged

Duration: 29s
"""


def test_summary_parsers() -> None:
    sample = measure.Sample(1.0, 0, 0, PREVIEW_OUTPUT)
    assert suite._count(sample) == 726
    assert suite._changes(sample) == "+6 ~1 =719"
    created = measure.Sample(1.0, 0, 0, "Resources:\n    + 93 created\n\nDuration: 7s\n")
    assert suite._count(created) == 93
    assert suite._changes(created) == "+93"
    assert suite._count(measure.Sample(1.0, 0, 1, "error: boom\n")) is None


def test_sampler_sees_the_whole_process_tree_and_stops_it_at_the_limit() -> None:
    # A parent that starts a child holding ~64 MiB: the peak must include the child.
    child = "b = bytearray(64 * 2**20); import time; time.sleep(1.5)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    sample = measure.run([sys.executable, "-c", parent])
    assert sample.returncode == 0 and not sample.timed_out
    assert sample.peak_rss > 64 * 2**20
    stopped = measure.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert stopped.timed_out and stopped.seconds < 10


def test_shared_pages_count_once_in_the_proportional_set_size() -> None:
    """A parent touches 64 MiB, then forks two children that keep the pages it wrote (copy-on-write,
    never written again): the resident sets sum to three times 64 MiB, the tree holds it once."""
    script = (
        "import os, time\n"
        "b = bytearray(64 * 2**20)\n"
        "for i in range(0, len(b), 4096): b[i] = 1\n"
        "for _ in range(2):\n"
        "    if os.fork() == 0: time.sleep(1.5); os._exit(0)\n"
        "time.sleep(1.5); os.wait(); os.wait()\n"
    )
    sample = measure.run([sys.executable, "-c", script])
    assert sample.returncode == 0, sample.output
    assert sample.peak_rss > 3 * 64 * 2**20
    assert 64 * 2**20 < sample.peak_pss < 2 * 64 * 2**20, (sample.peak_rss, sample.peak_pss)


def test_cpu_is_summed_by_kind_of_process() -> None:
    """A child that spins for about a second: its CPU counts, under its kind, also after it has exited and
    before its parent reaps it (no command line then); a sleeping parent's barely counts."""
    spin = "import time; end = time.process_time() + 1.0\nwhile time.process_time() < end: pass"
    parent = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen(['kubectl-not-really', '-c', {spin!r}], executable=sys.executable)\n"
        "time.sleep(2.5)\nchild.wait()"
    )
    sample = measure.run([sys.executable, "-c", parent])
    cpu = dict(sample.cpu)
    assert sample.returncode == 0 and 0.8 <= cpu["kubectl"] <= 2.0, sample.cpu
    assert sample.cpu[0][0] == "kubectl" and "?" not in cpu, sample.cpu


def _row(label: str, seconds: float, **extra: object) -> suite.Row:
    sample = measure.Sample(seconds, 512 * 2**20, 0, "")
    return suite.Row(label, measure.Result(seconds, 512 * 2**20, 1, (sample,)), dict(extra))


def test_report_states_every_target_gap(tmp_path: Path) -> None:
    results = suite.Results()
    results.preview = [
        _row("1000", 180.0, variant="default", resources=7191),
        _row("1000", 120.0, variant="PULUMI_SKIP_CHECKPOINTS=true", resources=7191),
    ]
    results.up = [
        _row("100", 150.0, side="pulumi up", resources=720),
        _row("100", 50.0, side="kubectl apply --server-side", resources=577),
    ]
    results.incremental = [
        _row("1000", 40.0, command="pulumi preview", resources=7197, changes="+6 ~1 =7190"),
        _row("1000", 20.0, command="pulumi preview, PULUMI_SKIP_CHECKPOINTS=true", resources=7197, changes="+6"),
        _row(suite.CLIENT_STACK_LABEL, 5.0, command="pulumi preview", resources=150, changes="+6 ~1 =143"),
    ]
    options = suite.Options((10, 100, 1000), 100, True, 5, 3, 1, 1000, 300.0, True, tmp_path, None)
    text = report.render(results, options, "python -m bench")
    assert "| full preview, N = 1000 (default) | < 90 s, < 1 GiB | 180.0 s, 512 MiB | 2.0x the time," in text
    assert "| one-freelancer preview, N = 1000 (default) | < 10 s | 40.0 s | 4.0x |" in text
    assert "| one-freelancer preview, N = 1000 (PULUMI_SKIP_CHECKPOINTS) | < 10 s | 20.0 s | 2.0x |" in text
    assert "| `pulumi up` / kubectl, N = 100 | at most 1.5x | 3.0x | 2.0x the target |" in text
    proposal = "| one-freelancer preview, one stack per client (proposal) (default) | < 10 s at any N | 5.0 s | 0.5x |"
    assert proposal in text


def test_client_sized_roster_for_the_proposal(tmp_path: Path) -> None:
    data = roster.generate(suite.CLIENT_STACK_FREELANCERS, variant=suite.CLIENT_STACK_VARIANT, clients=1)
    loaded = load_roster(roster.write(data, tmp_path / "roster.yaml"), StackSettings(api_key_present=True))
    assert len(loaded.clients) == 1
    assert len(loaded.freelancers) == suite.CLIENT_STACK_FREELANCERS
    assert {s.tier for f in loaded.freelancers for s in f.sandboxes} == set(roster.TIERS)


def test_failed_steps_report_their_error_lines_not_the_stack_outputs() -> None:
    output = (
        "Updating (bench-up-1000):\n"
        " +  kubernetes:core/v1:PersistentVolumeClaim home-x creating (0s)\n"
        "    error: resource was not successfully created: Operation cannot be fulfilled on resourcequotas\n"
        "Outputs:\n" + "    sandboxes: [...]\n" * 500
    )
    text = suite._errors(output)
    assert text.startswith("+  kubernetes:core/v1:PersistentVolumeClaim home-x creating (0s) error: resource was")
    assert suite.QUOTA_RACE in text and "Outputs" not in text


def test_reruns_after_the_quota_race_are_shown(tmp_path: Path) -> None:
    sample = measure.Sample(120.0, 2**30, 0, "", reruns=1)
    row = suite.Row("1000", measure.Result(120.0, 2**30, 1, (sample,)), {"side": "pulumi up", "resources": 7191})
    results = suite.Results(up=[row])
    options = suite.Options((1000,), None, True, 5, 3, 1, 1000, 300.0, True, tmp_path, None)
    assert "| 1000 | pulumi up | 7191 | 120.0 s (incl. 1 rerun after the quota race) |" in report.render(
        results, options, "python -m bench"
    )


def test_stacks_bench_reads_what_the_orchestrator_printed() -> None:
    from bench.stacks import Measurement, Results, _note, render

    output = (
        "==> up of 51 stack(s) of full1000, 3 at a time\n"
        "==> full1000-client-be0c: hit the ResourceQuota update race (kubernetes/kubernetes#67761); again\n"
        "up of environment full1000: 51 of 51 stacks ok\n"
    )
    assert _note(output) == "51/51 stacks ok; 3 at a time; 1 automatic reruns (quota race)"
    assert _note("change1000: 1 of 51 stacks touched\n") == "1 of 51 stacks touched"
    results = Results(
        [Measurement("plan, one more freelancer", "1000", 0.81, 92.4, "1 of 51 stacks touched", True, 71.6)]
    )
    table = render(results, "python -m bench.stacks")
    assert "| plan, one more freelancer | 1000 | 0.8 s | 92 MiB | 72 MiB | 1 of 51 stacks touched |" in table
