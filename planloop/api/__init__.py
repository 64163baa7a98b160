"""planloop's HTTP API (FastAPI): cycles, plan commands and reads, with API tokens and idempotency keys."""

from .app import create_app

__all__ = ["create_app"]
