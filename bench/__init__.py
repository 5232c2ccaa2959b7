"""Scale benchmarks (issue #6): ``make bench`` / ``python -m bench``; results in bench/RESULTS.md."""
