"""`bfvr profile`: not implemented yet (its issue fills it)."""

from __future__ import annotations

import typer

from bfvr.errors import BfvrError


def register(app: typer.Typer) -> None:
    @app.command("profile", help="(not implemented yet)")
    def _cmd() -> None:
        raise BfvrError("'bfvr profile' is not implemented yet.")
