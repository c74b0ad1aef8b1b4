"""A cache folder for built test-bed artefacts, keyed by a hash of their inputs."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """Return the cache folder: $SWITCHOS_TEST_CACHE, or .cache/testbed in the repository."""
    configured = os.environ.get("SWITCHOS_TEST_CACHE")
    root = Path(configured) if configured else REPOSITORY / ".cache" / "testbed"
    root.mkdir(parents=True, exist_ok=True)
    return root


def input_key(parts: Iterable[str | bytes]) -> str:
    """Hash the given inputs into a short key for a cache entry name."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:20]


def cached_folder(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """Return the cache folder ``name-key``, building it with ``build(folder)`` when missing.

    The build runs in a temporary folder that is renamed into place only when
    it succeeds, so an interrupted build never leaves a half-built entry.
    """
    target = cache_root() / f"{name}-{key}"
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_root()))
    try:
        build(staging)
        try:
            staging.rename(target)
        except OSError:
            # Another process built the same entry first; keep theirs.
            if not target.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target
