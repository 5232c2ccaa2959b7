"""Container image references: a tag says which release, a digest says which bytes.

A tag can be moved to other content by whoever can push to the registry; a ``@sha256:`` digest cannot.
So the platform refers to images by digest (``name:tag@sha256:...``: the tag stays for people, the digest
is what the kubelet pulls), and a stack setting, ``requireImageDigests`` (on by default, as in
production), refuses any reference without one. The policy pack reads the same grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIGEST_RE = r"sha256:[0-9a-f]{64}"
TAG_RE = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = re.compile(rf"^{DIGEST_RE}$")
_TAG = re.compile(rf"^{TAG_RE}$")
# A repository: an optional registry host (with :port), then lowercase path components (OCI distribution spec).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*$")

TAG_WITH_OPTIONAL_DIGEST = rf"^{TAG_RE}(@{DIGEST_RE})?$"
"""A tag, optionally pinned by digest: ``0.19.4`` or ``0.19.4@sha256:<64 hex>`` (the roster's ``image``)."""

DIGEST_EXAMPLE = "@sha256:<64 lowercase hex digits>"


@dataclass(frozen=True)
class ImageRef:
    """``registry:5000/team/app:1.2@sha256:...`` as (repository, tag, digest); tag and digest may be None."""

    repository: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def split(reference: str) -> ImageRef:
    """Split a reference without judging it (a ``:`` in the last path component starts the tag)."""
    name, _, digest = reference.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
        return ImageRef(repository, tag, digest or None)
    return ImageRef(name, None, digest or None)


def has_digest(reference: str) -> bool:
    digest = split(reference).digest
    return digest is not None and bool(_DIGEST.match(digest))


def reference_problem(reference: str, *, require_digest: bool) -> str | None:
    """Why ``reference`` (``name:tag``, ``name@sha256:...`` or ``name:tag@sha256:...``) is not usable, or None."""
    ref = split(reference)
    if not _REPOSITORY.match(ref.repository):
        return f"{reference!r} is not an image reference (expected name:tag, name@sha256:... or name:tag@sha256:...)"
    if ref.tag is not None and not _TAG.match(ref.tag):
        return f"{reference!r} has an invalid tag {ref.tag!r}"
    if ref.digest is not None and not _DIGEST.match(ref.digest):
        return f"{reference!r} has an invalid digest {ref.digest!r} (expected sha256: and 64 lowercase hex digits)"
    if ref.tag is None and ref.digest is None:
        return f"{reference!r} has neither a tag nor a digest (it would pull :latest)"
    if ref.tag == "latest" and ref.digest is None:
        return f"{reference!r} uses the moving tag 'latest': pin a version"
    if require_digest and ref.digest is None:
        return f"{reference!r} is pinned by tag only: add its digest ({DIGEST_EXAMPLE})"
    return None


def tag_problem(value: str, *, require_digest: bool) -> str | None:
    """Why ``value`` (``TAG`` or ``TAG@sha256:...``, appended to a repository with ``:``) is not usable, or None."""
    tag, _, digest = value.partition("@")
    if not _TAG.match(tag) or (digest and not _DIGEST.match(digest)):
        return f"{value!r} is not a tag, optionally with a digest (e.g. 0.19.4 or 0.19.4{DIGEST_EXAMPLE})"
    if tag == "latest" and not digest:
        return "the moving tag 'latest' is not allowed: pin a version"
    if require_digest and not digest:
        return f"{value!r} is pinned by tag only: add its digest ({value}{DIGEST_EXAMPLE})"
    return None
