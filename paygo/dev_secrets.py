"""Development secrets: made once per installation and kept in var/secrets/, never constants in code.

Only the settings import this, and only with DEBUG on: with DEBUG off every secret comes from the
environment. Each secret is its own file (mode 0600, in a 0700 folder), so that a secret added
later is made on its own, and the first process to need it creates it atomically: a complete file
is written under a private name and then hard-linked to its final name, which fails if another
process got there first, in which case both use the one that is there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path


def dev_secret(name: str, *, folder: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(50)) -> str:
    """This installation's `name`, read from `folder`/`name`; made with `make()` the first time."""
    path = folder / name
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600.
    fd, draft = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(make())
            file.flush()
            os.fsync(file.fileno())
        # Fails if another process made it first: its secret is the one.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        os.unlink(draft)
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"{path} is empty; delete it and a new secret is made on the next start.")
    return value
