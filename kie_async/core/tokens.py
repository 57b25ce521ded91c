"""Cheap unique tokens for temp file and folder names.

``secrets``/``uuid4`` read ``os.urandom`` on every call: a ``getrandom`` system call that measured ~0.1 ms on
the VMs here, five times per run in a fan-out (temp file, staging folders, run id). Those names need to be
unique, not secret, and every one of them is created with ``O_EXCL``/``mkdir`` so a collision fails loudly
rather than overwriting. Anything an attacker must not guess (callback correlation tokens, upload names on
the provider's host) keeps using ``secrets``.
"""

from __future__ import annotations

import os
import random

_rng = random.Random()  # seeded from os.urandom, once


def _reseed() -> None:
    _rng.seed()


os.register_at_fork(after_in_child=_reseed)  # a forked child must not repeat its parent's names


def name_token(nbytes: int) -> str:
    """``2 * nbytes`` random hex digits for a file or folder name."""
    return f"{_rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"
