"""sandbox-infra's CrossGuard policies: the guardrails a reviewer of a `pulumi preview` could miss.

The policies are pure functions over plain Kubernetes objects, wrapped into Pulumi policies in
:mod:`sandbox_policies.pack`. The pack runs as its own program inside the Pulumi engine, with the
repository root on ``sys.path`` (``policies/serve``). The dependency goes one way: the pack imports the
program's pure modules for every fact both need (label keys and names from ``sandbox_infra.naming``,
the tier table from ``tiers``, quantities from ``quantity``, the image reference grammar from ``images``,
the allowed chart repositories and Istio's namespace from ``charts``, its config defaults from the stack
settings' defaults in ``settings``), and the program never imports the pack. None of those modules imports
Pulumi (tests/policy/test_pack.py checks both directions).
"""
