"""`bfvr models`: list the models, download/locate their weights, check a weights file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfvr.errors import InputError, ModelError


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


#: one line of measured numbers per model, shown by `bfvr models` (from docs/models.md)
MEASURED: dict[str, str] = {
    "bfvr-lite": "9 held-out clips, blur 4 + x4 down + noise 4 + CRF 25: PSNR +1.69 dB (new people "
                 "+1.64), SSIM +0.019, flicker 2.96 -> 2.81; whole frames in the wild +1.89 dB; model alone "
                 "12-17 frames/s bf16 at 512^2 on 2 CPU cores; the default command 4 (512^2), 1.6 (720p), "
                 "0.9 (1080p) frames/s, --faces-only 6 / 5 / 3; clean faces keep 100 % of their detail "
                 "(40.9+ dB)",
}


def list_models() -> None:
    from bfvr.models import weights as W
    from bfvr.models.hub import available_models

    rows = [("NAME", "CACHED", "SIZE", "DESCRIPTION / PATH")]
    for spec in available_models():
        if spec.weights is None:
            rows.append((spec.name, "-", "-", spec.description + " (no weights)"))
            continue
        path = W.cached_path(spec.weights)
        cached = path.is_file()
        entry = W.get_entry(spec.weights)
        state = ("bundled" if cached else "MISSING") if entry.bundled else ("yes" if cached else "no")
        rows.append((spec.name, state, _size(path.stat().st_size) if cached else "-", spec.description))
        if spec.name in MEASURED:
            rows.append(("", "", "", f"  measured: {MEASURED[spec.name]}"))
        rows.append(("", "", "", f"  {path}" + ("" if cached or entry.bundled else "  "
                                                f"<- {W.source_url(entry)}")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    typer.echo(f"\ncache: {W.weights_dir()} (set BFVR_HOME to move it)")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        name="models",
        help="List the models and manage their weights (download, cache path, verify). "
             "Without a subcommand: list.",
        invoke_without_command=True,
        no_args_is_help=False,
    )

    @sub.callback()
    def _default(ctx: typer.Context) -> None:
        if ctx.invoked_subcommand is None:
            list_models()

    @sub.command("list", help="List the models: name, cached?, size, description, cache path and source URL.")
    def _list() -> None:
        list_models()

    @sub.command("download", help="Download the official weights of NAME into the cache (progress bar, "
                                   "temp file + rename; the sha256 is recorded on first download and "
                                   "checked on later loads).")
    def _download(
        name: Annotated[str, typer.Argument(help="model name, e.g. stc, stc-deflicker, stc-deflicker-sd",
                                            show_default=False)],
        sha256: Annotated[str | None, typer.Option("--sha256", help="expected sha256 (hex) of the file; the "
                                                   "download is rejected if it differs")] = None,
        force: Annotated[bool,
                         typer.Option("--force", help="download again even if the file is cached")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    ) -> None:
        from bfvr.models import weights as W
        from bfvr.models.hub import get_spec

        spec = get_spec(name)
        if spec.weights is None:
            raise ModelError(f"model '{name}' needs no weights; nothing to download.")
        if W.get_entry(spec.weights).bundled:
            typer.echo(f"{name}: its weights ship with bfvr "
                       f"({W.cached_path(spec.weights)}); nothing to download.")
            return
        path = W.fetch(spec.weights, sha256=sha256, force=force, progress=not quiet)
        rec = W.read_registry().get(path.name, {})
        typer.echo(f"{path}  {_size(path.stat().st_size)}  sha256 {rec.get('sha256', '?')}")

    @sub.command("path", help="Print where the cache keeps the weights of NAME (whether or not they are "
                              "downloaded; put a manually fetched file there).")
    def _path(name: Annotated[str, typer.Argument(help="model name, e.g. stc", show_default=False)]) -> None:
        from bfvr.models import weights as W
        from bfvr.models.hub import get_spec

        spec = get_spec(name)
        if spec.weights is None:
            raise ModelError(f"model '{name}' needs no weights.")
        path = W.cached_path(spec.weights)
        typer.echo(str(path))
        if not path.is_file():
            typer.echo(f"(not downloaded yet: 'bfvr models download {name}' or fetch "
                       f"{W.source_url(W.get_entry(spec.weights))})", err=True)

    @sub.command("verify", help="Check that a weights file fits model NAME: exact state_dict keys "
                                "and shapes, loaded safely (`bfvr models verify NAME FILE`, or FILE "
                                "--model NAME); print its sha256 (and compare it with --sha256).")
    def _verify(
        first: Annotated[str, typer.Argument(metavar="NAME FILE", help="model name then weights "
                                             "file (.pth/.pt, .safetensors or a Hugging Face model "
                                             "folder); or just the file with --model", show_default=False)],
        second: Annotated[Path | None, typer.Argument(show_default=False, hidden=True)] = None,
        model: Annotated[str | None,
                         typer.Option("--model", "-m", help="model name the file is for, e.g. stc")
                         ] = None,
        sha256: Annotated[str | None,
                          typer.Option("--sha256", help="expected sha256 (hex) of the file")] = None,
    ) -> None:
        from bfvr.errors import ConfigError
        from bfvr.models import weights as W
        from bfvr.models.hub import get_spec, load_net

        if second is not None:
            if model is not None and model != first:
                raise ConfigError(f"two model names given ({first} and --model {model}); give one.")
            model, file = first, second
        else:
            file = Path(first)
            if model is None:
                raise ConfigError("name the model the file is for: `bfvr models verify NAME FILE`.")
        spec = get_spec(model)
        if spec.weights is None:
            raise ModelError(f"model '{model}' takes no weights.")
        if not file.exists():
            raise InputError(f"{file} does not exist; pass the path of a weights file.")
        path = W.resolve(spec.weights, weights=file)
        digest = W.sha256_file(path)
        typer.echo(f"sha256 {digest}  {path}")
        if sha256:
            W.check_sha256(path, W.normalize_sha256(sha256), "the --sha256 you passed")
        net, _ = load_net(model, path=path)
        n = sum(t.numel() for t in net.state_dict().values())
        typer.echo(f"OK: {path} fits '{model}': {len(net.state_dict())} tensors, {n:,} parameters")

    app.add_typer(sub, name="models")
