"""The README's walk through a planning cycle is executed, so it cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    # Blocks that talk to a running Temporal server (top-level await) are illustrations only.
    return [block for block in blocks if "await " not in block]


def test_the_readme_walk_runs_and_its_assertions_hold() -> None:
    blocks = python_blocks()
    assert blocks, "the README lost its walk through a planning cycle"
    namespace: dict[str, object] = {"__name__": "readme_walk"}
    exec(compile("\n".join(blocks), str(README), "exec"), namespace)
    plan = namespace["plan"]
    assert plan.signed_off_revision == 2  # type: ignore[attr-defined]
