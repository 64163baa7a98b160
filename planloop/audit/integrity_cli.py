"""`planloop audit` commands that prove nothing was altered: verify a plan's or the store's hash chains,
publish and list signed checkpoints, check the store against a kept checkpoint, export a plan's bundle, and
verify a bundle offline.

``integrity_app`` is an unnamed typer app: planloop.audit.cli merges its commands into the `audit` group.
"""

from __future__ import annotations

import typer

integrity_app = typer.Typer(no_args_is_help=True)
