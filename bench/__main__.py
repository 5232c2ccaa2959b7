"""``python -m bench``: run the scale benchmarks and regenerate bench/RESULTS.md (``make bench``).

Options:
  --quick          N = 10 and 100 only, fewer runs, writes bench/RESULTS.quick.md (not committed)
  --sizes 10,100   roster sizes for measurements 1 and 2
  --up-size N      size for measurements 3 and 4 (default 100; 0 skips them)
  --big-up         also `pulumi up` the largest size and time one more freelancer there (slow; at
                   N = 1000 it did not finish here: see docs/benchmarks.md)
  --cap S          time limit of the default preview at N >= 1000 (default 300 s)
  --no-skip-checkpoints  leave out the previews with PULUMI_SKIP_CHECKPOINTS=true
  --output FILE    where to write the results (default bench/RESULTS.md)
  --keep           leave the temporary project, logs and raw profiles in place
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import report, suite
from bench.project import REPO, CommandError, Project, toolchain_env

HERE = Path(__file__).resolve().parent


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Scale benchmarks of the single-stack layout (the baseline of bench.stacks).",
    )
    parser.add_argument("--quick", action="store_true", help="N = 10, 100 only; write bench/RESULTS.quick.md")
    parser.add_argument("--sizes", help="comma-separated roster sizes (default 10,100,1000)")
    parser.add_argument("--up-size", type=int, default=100, help="N for pulumi up vs kubectl (0: skip)")
    parser.add_argument("--big-up", action="store_true", help="also up the largest N and time one more freelancer")
    parser.add_argument(
        "--cap", type=float, default=300, help="time limit (s) of the default preview at N >= 1000 (default 300)"
    )
    parser.add_argument("--no-skip-checkpoints", action="store_true", help="skip the PULUMI_SKIP_CHECKPOINTS previews")
    parser.add_argument("--output", type=Path, help="where to write the results (default bench/RESULTS.md)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    sizes = (
        tuple(int(s) for s in args.sizes.split(",")) if args.sizes else ((10, 100) if args.quick else (10, 100, 1000))
    )
    output = args.output or HERE / ("RESULTS.quick.md" if args.quick else "RESULTS.md")
    profiles_dir = None if args.quick else HERE / "profiles"
    if profiles_dir is not None:
        profiles_dir.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sandbox-infra-bench-"))
    options = suite.Options(
        sizes=sizes,
        up_size=args.up_size or None,
        big_up=args.big_up,
        runs_small=3 if args.quick else 5,
        runs_slow=2 if args.quick else 3,
        runs_large=1,
        large_from=1000,
        cap=args.cap,
        skip_checkpoints_variant=not args.no_skip_checkpoints,
        work=work,
        profiles_dir=profiles_dir,
    )
    command = "python -m bench" + (" " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 and argv is None else "")
    results = suite.Results()
    start = time.perf_counter()
    suite.log(
        f"work directory {work}; results -> {output.relative_to(REPO) if output.is_relative_to(REPO) else output}"
    )
    env = toolchain_env(f"file://{work / 'state'}")
    project: Project | None = None
    try:
        suite.cleanup(None, env, work)  # leftovers of an interrupted run
        suite.measure_evaluate(options, results)
        project = Project(work)
        suite.measure_preview(project, options, results)
        if options.up_size:
            suite.measure_up(project, options, results, options.up_size)
            suite.measure_client_stack(project, options, results)
        if options.big_up and max(sizes) != options.up_size:
            suite.measure_up(project, options, results, max(sizes), big=True)
    except (CommandError, OSError) as exc:
        suite.log(f"FAILED: {exc}")
        results.failures.append(str(exc).splitlines()[0])
    except KeyboardInterrupt:
        results.failures.append("interrupted")
    finally:
        results.seconds = time.perf_counter() - start
        if results.failures:
            # Keep the last complete results: a failed run's tables go next to them, not over them.
            output = output.with_name(output.stem + ".partial.md")
        output.write_text(report.render(results, options, command))
        suite.log(f"wrote {output}")
        try:
            suite.cleanup(project, env, work)
        except CommandError as exc:
            suite.log(f"cleanup failed: {exc}")
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    suite.log(f"done in {time.perf_counter() - start:.0f} s")
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
