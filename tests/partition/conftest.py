"""Fixtures for the partition tests; each one detaches, unmounts or removes what it set up."""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from disk_helpers import attached_loop, make_sparse  # noqa: E402


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Attach sparse images to loop devices: ``loop_device(size, sector_size=512, read_only=False)``."""
    counter = itertools.count()
    with contextlib.ExitStack() as stack:

        def attach(size: int, *, sector_size: int = 512, read_only: bool = False) -> Path:
            image = make_sparse(tmp_path / f"disk{next(counter)}.img", size)
            return stack.enter_context(attached_loop(image, sector_size=sector_size, read_only=read_only))

        yield attach


@pytest.fixture
def cleanup() -> Iterator[contextlib.ExitStack]:
    """An ExitStack that the test fills with mounts, swaps and devices, unwound in reverse."""
    with contextlib.ExitStack() as stack:
        yield stack
