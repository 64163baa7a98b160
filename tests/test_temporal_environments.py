"""The Temporal fixtures start from the installed binaries and answer: later tests rely on both."""

from __future__ import annotations

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.testing import WorkflowEnvironment


async def test_time_skipping_server_starts_from_the_installed_binary(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    assert time_skipping_env.supports_time_skipping
    before = await time_skipping_env.get_current_time()
    await time_skipping_env.sleep(3600)
    assert (await time_skipping_env.get_current_time() - before).total_seconds() >= 3600


async def test_dev_server_starts_from_the_installed_binary(dev_server_env: WorkflowEnvironment) -> None:
    assert not dev_server_env.supports_time_skipping
    answer = await dev_server_env.client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace="default")
    )
    assert answer.namespace_info.name == "default"
