"""`bfvr bench`: not implemented yet (its issue fills it)."""

from __future__ import annotations

import typer

from bfvr.errors import BfvrError


def register(app: typer.Typer) -> None:
    @app.command("bench", help="(not implemented yet)")
    def _cmd() -> None:
        raise BfvrError("'bfvr bench' is not implemented yet.")
