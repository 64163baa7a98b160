"""How `planloop up` watches its parts (the worker and the HTTP API): a part that fails or stops by itself
ends `up`; a user's error in a part is raised as it is, so the CLI shows it as one line."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from planloop.errors import PlanloopError, PortInUseError
from planloop.stack import _supervise


class Servers:
    def dead_server(self) -> str | None:
        return None


async def supervise(*parts: Any) -> int:
    tasks = {
        name: asyncio.create_task(part) for name, part in zip(("worker", "HTTP API"), parts, strict=False)
    }
    try:
        return await asyncio.wait_for(_supervise(Servers(), tasks, asyncio.Event()), 5)  # type: ignore[arg-type]
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def forever() -> None:
    await asyncio.Event().wait()


async def test_a_crashed_api_stops_up_with_exit_code_1() -> None:
    async def crash() -> None:
        raise RuntimeError("boom")

    assert await supervise(forever(), crash()) == 1


async def test_an_api_that_ends_by_itself_stops_up() -> None:
    async def ends() -> None:
        return None

    assert await supervise(forever(), ends()) == 1


async def test_a_user_error_of_the_api_is_raised_as_one_line() -> None:
    async def taken() -> None:
        raise PortInUseError("the HTTP API", "127.0.0.1", 8360, "PLANLOOP_API_PORT")

    with pytest.raises(PlanloopError, match="PLANLOOP_API_PORT"):
        await supervise(forever(), taken())
