"""The `bfvr` command line: a thin layer over the library.

Each subcommand lives in `bfvr.commands.<name>` (options + a call into the library); this module only
registers them and turns errors into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings

import typer

from bfvr.commands import (
    bench,
    compare,
    degrade,
    evaluate,
    evaluate_codes,
    export,
    info,
    models,
    prepare,
    profile,
    restore,
    train,
    ui,
)
from bfvr.errors import BfvrError

app = typer.Typer(
    name="bfvr",
    help="Blind face video restoration: restore, degrade, prepare, train, evaluate, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for _module in (restore, info, degrade, prepare, train, evaluate, profile, compare, bench, models, export,
                ui, evaluate_codes):
    _module.register(app)


def _print_version(value: bool) -> None:
    if value:
        from bfvr import __version__

        typer.echo(f"bfvr {__version__}")
        raise typer.Exit()


#: what `-v` installed on the "bfvr" logger (handler, old level, old propagate), undone when `main` returns
_log_setup: list[tuple[logging.Handler, int, bool]] = []


def _setup_logging(verbose: int) -> None:
    """``-v``: bfvr's log messages (every module logs to ``logging.getLogger(__name__)`` under "bfvr") at
    INFO on stderr, ``-vv`` at DEBUG. Without it only warnings reach stderr (Python's last-resort handler),
    as before. Undone when `main` returns (in-process callers keep their logging)."""
    if verbose <= 0:
        return
    logger = logging.getLogger("bfvr")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(name)s %(levelname)s: %(message)s",
                                           "%H:%M:%S"))
    _log_setup.append((handler, logger.level, logger.propagate))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    logger.propagate = False  # one line per message, also when a command configures the root logger


def _undo_logging() -> None:
    logger = logging.getLogger("bfvr")
    while _log_setup:
        handler, level, propagate = _log_setup.pop()
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True,
                                help="Log what bfvr does on stderr (-v: info, -vv: debug); goes before the "
                                     "command: bfvr -v restore ..."),
) -> None:
    """Blind face video restoration: restore, degrade, prepare, train, evaluate, benchmark."""
    _setup_logging(verbose)


class Terminated(BaseException):
    """SIGINT (Ctrl-C), SIGTERM or SIGHUP arrived: unwinds every writer (each removes its temporary output)
    up to `main`, which says what was kept. Not an `Exception` (nothing may swallow it) nor a
    `KeyboardInterrupt` (typer turns those into a silent exit 130 before `main` sees them)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _install_signal_handlers() -> dict[int, object]:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP (kill, timeout, job schedulers, a closed terminal) raise
    `Terminated` in this process, so every writer cleans up and `main` says what was kept. Only the CLI
    process: a forked child (e.g. a DataLoader worker) gets Python's default behaviour back."""
    pid = os.getpid()
    raised = []

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != pid:  # a forked child inherited this handler: behave as Python's default
            if signum == signal.SIGINT:
                signal.signal(signum, signal.default_int_handler)
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if raised:  # already unwinding: let the cleanup finish
            return
        raised.append(signum)
        raise Terminated(signum)

    old = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None or signal.getsignal(sig) == signal.SIG_IGN:  # ignored by whoever started us (nohup,
            continue                                                # a background job): stays ignored
        try:
            old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread (e.g. main() called from a thread)
            pass
    return old


def _fail(message: str, code: int) -> None:
    print(f"bfvr: error: {message}", file=sys.stderr)
    sys.exit(code)


def one_line_warning(message: object, *_args: object, **_kw: object) -> str:
    """`warnings.formatwarning` of the CLI: a warning (e.g. no face found) on one line, like errors."""
    return f"bfvr: warning: {' '.join(str(message).split())}\n"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `bfvr` console script.

    Process-wide settings belong to the CLI process only: the malloc tuning (`bfvr.io.memory`) is applied
    when this is the console script (`argv` None, before any thread starts), and the one-line warning format
    only while `main` runs. Library users and in-process callers (`main([...])` in tests) keep theirs.
    """
    debug = os.environ.get("BFVR_DEBUG") == "1"
    if argv is None:
        from bfvr.io.memory import tune_malloc_for_streaming

        tune_malloc_for_streaming()  # flat memory over long videos
    old_format = warnings.formatwarning
    warnings.formatwarning = one_line_warning
    old_handlers = _install_signal_handlers()
    try:
        # standalone mode: typer itself reports bad flags (usage + exit 2) and --help; SystemExit passes
        app(args=argv, prog_name="bfvr")
    except Terminated as e:  # a batch (bfvr.scale) says what it kept instead
        what = "interrupted" if e.signum == signal.SIGINT else f"stopped by {signal.Signals(e.signum).name}"
        _fail(f"{what}; {getattr(e, 'batch_note', 'no output was written')}.", 128 + e.signum)
    except KeyboardInterrupt as e:
        _fail(f"interrupted; {getattr(e, 'batch_note', 'no output was written')}.", 130)
    except BfvrError as e:
        if debug:
            raise
        _fail(" ".join(str(e).split()), e.exit_code)
    except Exception as e:  # a bug: still one line unless asked for the traceback
        if debug:
            raise
        _fail(f"internal error ({type(e).__name__}: {' '.join(str(e).split())}); "
              "rerun with BFVR_DEBUG=1 for the traceback and please report it.", 1)
    finally:
        _undo_logging()
        warnings.formatwarning = old_format
        for sig, h in old_handlers.items():
            try:
                signal.signal(sig, h)
            except (ValueError, OSError, TypeError):
                pass


if __name__ == "__main__":
    main()
