"""The policy pack's entry point: the Pulumi engine runs this file and talks to the server it starts.

Everything the policies check lives in ``sandbox_policies`` (importable without starting a server, which is
how the tests use it). Serving happens only when the engine runs this file as ``__main__``.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, PolicyPack
from sandbox_policies import once, secrets
from sandbox_policies.pack import PACK_NAME, all_policies

if __name__ == "__main__":
    # Let the Secret policy see which inputs are Pulumi secrets (sandbox_policies/secrets.py says why).
    secrets.install()
    once.install()  # each resource's properties converted once per request, not once per policy
    PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=all_policies())
