"""Scale benchmarks: ``make bench`` (one stack for everything, bench/RESULTS.md) and ``make bench-stacks``
(the split layout, bench/STACKS.md)."""
