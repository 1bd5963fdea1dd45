"""The local stack for tests: started on free ports (dev auth, no LLM, no periodic snapshots) in a
fresh data folder, and stopped with the process environment and the adapters' boto3 clients
restored — shared by the e2e and reliability suites."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def running_stack(data_dir: Path, *, console=None, llm_base_url: str | None = None) -> Iterator[object]:
    """``llm_base_url``: an OpenAI-compatible server (e.g. ``FakeLLM.base_url``) the LLM fallback uses,
    as ``OPENAI_BASE_URL`` does for ``make local``; ``console``: where the stack's lines go (quiet)."""
    from calroute.adapters.dynamo import base as dynamo_base
    from calroute.config import settings
    from calroute_dev.local.stack import Console, LocalStack

    saved_env = dict(os.environ)
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AWS_ENDPOINT_URL"):
        os.environ.pop(k, None)
    if llm_base_url:
        os.environ["OPENAI_BASE_URL"] = llm_base_url
    saved_tables = dynamo_base._shared
    st = LocalStack(data_dir=data_dir, port=0, aws_port=0, auth="dev", persist_interval=0,
                    console=console or Console(quiet=True))
    st.start()
    try:
        yield st
    finally:
        st.stop()
        os.environ.clear()
        os.environ.update(saved_env)
        dynamo_base._shared = saved_tables
        settings.cache_clear()
