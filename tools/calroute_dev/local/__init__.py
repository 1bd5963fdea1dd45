"""The local stack (moto emulation + HTTP gateway + in-process handlers). Not shipped in a layer."""

from __future__ import annotations

import os
from typing import Mapping, Optional


def restore_environ(saved: Mapping[str, Optional[str]]) -> None:
    """Put environment variables back as saved (``None``: the variable was unset)."""
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
