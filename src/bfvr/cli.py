"""The `bfvr` command line: a thin layer over the library.

Each subcommand lives in `bfvr.commands.<name>` (options + a call into the library); this module only
registers them and turns errors into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import os
import sys

import typer

from bfvr.commands import (bench, compare, degrade, evaluate, export, info, models, prepare, profile, restore, train,
                           ui)
from bfvr.errors import BfvrError

app = typer.Typer(
    name="bfvr",
    help="Blind face video restoration: restore, degrade, prepare, train, evaluate, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for _module in (restore, info, degrade, prepare, train, evaluate, profile, compare, bench, models, export, ui):
    _module.register(app)


def _fail(message: str, code: int) -> None:
    print(f"bfvr: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `bfvr` console script."""
    debug = os.environ.get("BFVR_DEBUG") == "1"
    try:
        # standalone mode: typer itself reports bad flags (usage + exit 2) and --help; SystemExit passes
        app(args=argv, prog_name="bfvr")
    except KeyboardInterrupt:
        _fail("interrupted; no output was written.", 130)
    except BfvrError as e:
        if debug:
            raise
        _fail(" ".join(str(e).split()), e.exit_code)
    except Exception as e:  # a bug: still one line unless asked for the traceback
        if debug:
            raise
        _fail(f"internal error ({type(e).__name__}: {' '.join(str(e).split())}); "
              "rerun with BFVR_DEBUG=1 for the traceback and please report it.", 1)


if __name__ == "__main__":
    main()
