"""`bfvr evaluate-codes`: top-1/top-5 code prediction accuracy of an STC Stage-II run on held-out videos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("evaluate-codes", help="Stage-II diagnostics for STC: how often a trained Stage-II run "
                 "predicts the codes the frozen Stage-I encoder gives the GT clip (top-1 and top-5 "
                 "accuracy, cross-entropy; spatial and temporal codebooks), on held-out videos degraded with "
                 "a seeded recipe. Writes metrics.md, metrics.csv and metrics.json (per video and mean). See "
                 "docs/training.md.")
    def _cmd(
        run: Annotated[Path, typer.Option("--run", "-r", help="Stage-II run folder of `bfvr train` (or one "
                                          "of its checkpoint folders).", show_default=False)],
        videos: Annotated[list[Path], typer.Option("--videos", "-i", help="Held-out videos, folders of "
                                                   "videos or a `bfvr prepare` manifest (repeatable).",
                                                   show_default=False)],
        recipe: Annotated[str | None, typer.Option("--recipe", help="Degradation recipe for the LQ input "
                                                   "(default: the run's data.recipe; 'none' = LQ is GT).",
                                                   show_default=False)] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the degradation (per video: "
                                          "clip_rng(seed, file stem)).")] = 0,
        max_frames: Annotated[int, typer.Option("--max-frames", help="Score the first N frames of each "
                                                "video, in consecutive windows of the run's clip "
                                                "length.")] = 24,
        stage1: Annotated[Path | None, typer.Option("--stage1", help="Stage-I run folder or weights file "
                                                    "(default: the run's model.stage1_weights).",
                                                    show_default=False)] = None,
        raw: Annotated[bool, typer.Option("--raw", help="Score the raw weights instead of the EMA "
                                          "ones.")] = False,
        device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
        threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads (default: "
                                                    "torch's).", show_default=False)] = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("codes_report"),
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing report.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        from bfvr.io.paths import check_output_folder, check_separate
        from bfvr.metrics.evaluate import check_report_dir, write_report
        from bfvr.train.code_eval import evaluate_codes

        check_separate([run, stage1, *videos], out, out_is_dir=True, what="report")
        check_output_folder(out, "report")
        check_report_dir(out, overwrite)
        result = evaluate_codes(run, videos, recipe=recipe, seed=seed, max_frames=max_frames, stage1=stage1,
                                raw=raw, device=device, threads=threads, progress=not quiet)
        paths = write_report(result, out)
        o = result["options"]
        typer.echo(f"code accuracy of {o['checkpoint']} ({o['weights']} weights, step {o['step']}), recipe "
                   f"{o['recipe']}, seed {o['seed']}, {o['size']}² x {o['clip_len']}-frame windows; "
                   "_s spatial, _t temporal codebook:")
        typer.echo(paths[0].read_text(encoding="utf-8").rstrip())
        typer.echo(f"report: {', '.join(str(p) for p in paths)}")
