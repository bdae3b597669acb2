"""`bfvr compare`: not implemented yet (its issue fills it)."""

from __future__ import annotations

import typer

from bfvr.errors import BfvrError


def register(app: typer.Typer) -> None:
    @app.command("compare", help="(not implemented yet)")
    def _cmd() -> None:
        raise BfvrError("'bfvr compare' is not implemented yet.")
