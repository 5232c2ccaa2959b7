"""sandbox-infra's CrossGuard policies: the guardrails a reviewer of a `pulumi preview` could miss.

The policies are pure functions over plain Kubernetes objects (``checks_*`` modules), wrapped into
Pulumi policies in :mod:`sandbox_policies.pack`. The pack runs as its own program inside the Pulumi
engine, so nothing here imports the ``sandbox_infra`` program: the few facts both need (label keys,
name prefixes, the tier table's defaults) are restated in :mod:`sandbox_policies.model` and
:mod:`sandbox_policies.config`, and the policy tests check them against the program's real output.
"""
