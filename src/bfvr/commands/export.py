"""`bfvr export`: write a model for deployment (ONNX) or ship trained weights (safetensors)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfvr.models import DEFAULT_MODEL


def _run_net_config(model: str, resolved: str | None, where: Path) -> dict | None:
    """BFVR-Lite runs may train a network of other sizes (`model.extra` of their config text `resolved`):
    its constructor arguments when they differ from the model's default, else None."""
    import yaml

    from bfvr.errors import ConfigError
    from bfvr.models.hub import get_spec

    if model != "bfvr-lite" or resolved is None:
        return None
    try:
        raw = yaml.safe_load(resolved)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where} is unreadable ({e}).") from None
    extra = ((raw or {}).get("model") or {}).get("extra") or {}
    default = {k: list(v) if isinstance(v, tuple) else v for k, v in get_spec(model).config.items()}
    merged = {**default, **{k: list(v) if isinstance(v, tuple) else v for k, v in extra.items()}}
    return None if merged == default else merged


def export_weights(model: str, source: Path, out: Path, *, dtype: str = "fp16", overwrite: bool = False,
                   ema: bool = True) -> Path:
    """The EMA (or, `ema=False`, the raw) weights of a `bfvr train` run, or a weights file, as one safetensors
    file for `model`, with metadata naming the task, config, step and run; checked against the model's exact
    keys and shapes."""
    import json

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from bfvr.errors import ConfigError, OutputError
    from bfvr.models import weights as W
    from bfvr.models.hub import expected_shapes
    from bfvr.train.checkpoint import find_checkpoint, load_weights

    if dtype not in ("fp16", "fp32"):
        raise ConfigError(f"--dtype must be fp16 or fp32, not {dtype!r}.")
    if out.suffix != ".safetensors":
        raise ConfigError(f"{out} must end in .safetensors.")
    from bfvr.io.paths import atomic_output, check_output_file, check_separate, make_folder

    check_output_file(out, "weights file")
    if out.exists() and not overwrite:
        raise OutputError(f"{out} exists; pass --overwrite to replace it.")

    check_separate([source], out, out_is_dir=False)  # never onto the weights (or into the run) it reads
    state = load_weights(source, prefer=("ema", "model") if ema else ("model",))
    meta = {"model": model, "source": str(source), "dtype": dtype}
    resolved = None
    if source.is_dir():
        ck = find_checkpoint(source)
        meta["weights"] = "ema" if ema and (ck / "ema.safetensors").is_file() else "model"
        try:
            info = json.loads((ck / "meta.json").read_text())
            run = ck.parent.parent
            runs = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else []
            resolved = (run / "config.yaml").read_text() if (run / "config.yaml").is_file() else None
        except (OSError, ValueError) as e:
            raise ConfigError(f"{ck} has an unreadable meta.json/run.json ({e}); export from an intact run "
                              "folder.") from None
        meta.update(step=str(info.get("step")), task=str(info.get("task", info.get("stage"))),
                    name=str(info.get("name")), checkpoint=ck.name)
        if runs:  # the start that wrote this checkpoint: its command line and source revision
            argv = [str(a) for a in runs[-1].get("argv", [])]
            cfg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None) or next(
                (argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config", "-c")), None)
            meta.update(config=str(cfg), argv=" ".join(argv))
            # the bfvr version, and for a run trained from a checkout of bfvr its revision
            meta.update({k: str(runs[-1][k]) for k in ("bfvr_version", "git_revision", "git_dirty")
                         if runs[-1].get(k) is not None})
        if resolved is not None:
            meta["resolved_config"] = resolved
        else:
            print(f"warning: {run} has no config.yaml; the exported file will not say how it was trained.")
    config = _run_net_config(model, resolved, source)
    W.check_state_dict(state, expected_shapes(model, config), what=f"the weights in {source}",
                       model=f"'{model}'" + (f" ({config})" if config else ""))
    if config is not None:  # a network of other sizes than the model's default: the loader reads this
        meta["net_config"] = json.dumps(config, sort_keys=True)
    cast = torch.float16 if dtype == "fp16" else torch.float32
    tensors = {k: (v.to(cast) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    make_folder(out.parent, "weights file")
    try:
        with atomic_output(out) as tmp:  # safetensors writes 0600; atomic_output gives the umask's mode
            save_file(tensors, str(tmp), metadata=meta)
    except (OSError, SafetensorError) as e:  # a folder the system does not let us write into
        raise OutputError(f"cannot write {out} ({' '.join(str(e).split())[:160]}); choose a writable "
                          "location.") from None
    return out


def register(app: typer.Typer) -> None:
    @app.command("export", help="Export a model: --format onnx writes the network as an "
                 "ONNX graph (run it with `bfvr restore --backend onnxruntime --weights "
                 "FILE`); --format safetensors writes the EMA weights of a `bfvr train` "
                 "run as a shippable weights file with its provenance in the metadata.")
    def _cmd(
        out: Annotated[Path, typer.Option("--output", "-o", help="Output file (.onnx or .safetensors).",
                                          show_default=False)],
        model: Annotated[str, typer.Option("--model", "-m",
                                           help="Model name (see `bfvr models`).")] = DEFAULT_MODEL,
        fmt: Annotated[str, typer.Option("--format", "-f", help="onnx or safetensors.")] = "onnx",
        weights: Annotated[Path | None, typer.Option("--weights", help="onnx: the model's weights "
                                                     "file (default: its bundled/cached weights); "
                                                     "safetensors: a bfvr train run folder, "
                                                     "checkpoint folder or weights file (required).")] = None,
        frames: Annotated[int | None, typer.Option("--frames", help="onnx: frames of the example input "
                                                   "(default: the model's clip length; BFVR-Lite keeps "
                                                   "T dynamic, STC is fixed to it).", min=1)] = None,
        size: Annotated[int | None, typer.Option("--size", help="onnx: side of the example input (default: "
                                                 "the model canvas; BFVR-Lite keeps H, W dynamic).",
                                                 min=16)] = None,
        dtype: Annotated[str, typer.Option("--dtype",
                                           help="safetensors: fp16 (half the size) or fp32.")] = "fp16",
        ema: Annotated[bool, typer.Option("--ema/--no-ema", help="safetensors from a run: its "
                                          "EMA weights (default) or the raw trained weights.")] = True,
        overwrite: Annotated[bool,
                             typer.Option("--overwrite",
                                          help="Replace the output file if it exists.")] = False,
    ) -> None:
        from bfvr.errors import ConfigError, ModelError, OutputError
        from bfvr.models.hub import get_spec

        get_spec(model)
        if fmt == "safetensors":
            if weights is None:
                raise ConfigError("--format safetensors needs --weights RUN_FOLDER (or a weights file).")
            path = export_weights(model, weights, out, dtype=dtype, overwrite=overwrite, ema=ema)
            typer.echo(f"{path}: {path.stat().st_size / 1e6:.1f} MB ({dtype})")
            return
        if fmt != "onnx":
            raise ConfigError(f"--format must be onnx or safetensors, not {fmt!r}.")
        if out.suffix != ".onnx":
            raise ConfigError(f"{out} must end in .onnx.")
        from bfvr.io.paths import atomic_output, check_output_file, make_folder

        check_output_file(out, "ONNX file")
        if out.exists() and not overwrite:
            raise OutputError(f"{out} exists; pass --overwrite to replace it.")

        from bfvr.models.hub import load_model
        from bfvr.models.onnx import export_onnx

        m = load_model(model, weights=str(weights) if weights else None, offline=True, precision="fp32")
        if not hasattr(m, "onnx_module"):
            raise ModelError(f"model '{model}' has no network to export.")
        make_folder(out.parent, "ONNX file")
        try:
            with atomic_output(out) as tmp:  # a new file, never one (or a link) placed there
                export_onnx(m, tmp, frames=frames, size=size)
        except OSError as e:  # a folder the system does not let us write into
            raise OutputError(f"cannot write {out} ({e.strerror or type(e).__name__}); choose a writable "
                              "location.") from None
        typer.echo(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
