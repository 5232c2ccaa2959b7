"""Pulumi entry point: kept thin on purpose; the program lives in sandbox_infra/program.py."""

from sandbox_infra.program import main

main()
