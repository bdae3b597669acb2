"""`bfvr prepare`: not implemented yet (its issue fills it)."""

from __future__ import annotations

import typer

from bfvr.errors import BfvrError


def register(app: typer.Typer) -> None:
    @app.command("prepare", help="(not implemented yet)")
    def _cmd() -> None:
        raise BfvrError("'bfvr prepare' is not implemented yet.")
