"""The docs cannot drift from the command line: every `bfvr` command in README.md and docs/*.md (fenced shell
blocks and inline `bfvr ...` spans) names a real subcommand, uses only flags that the subcommand's own --help
lists, and parses (argument count, option values); the cheap ones are run for real on tiny inputs.

Which commands run is the allowlist RUN below (command text as the docs write it -> the inputs it needs and
the files it must write); heavier ones are in RUN_SLOW (marked slow) and everything else is only checked.
An allowlisted command that no doc contains any more fails `test_allowlisted_commands_are_in_the_docs`, so
editing a documented command means updating its entry here, and the allowlist cannot silently go stale."""

from __future__ import annotations

import functools
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REPO, cut_clip, run_cli, shared_path

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCE = re.compile(r"^```(?:bash|sh|shell|console)[^\n]*\n(.*?)^```", re.S | re.M)
ANY_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE = re.compile(r"(?<!`)`(bfvr [^`\n]+)`(?!`)")
SEPARATORS = {";", "&&", "||", "|", "&"}
ROOT_ONLY = {"--help", "-h", "--version", "-V"}
#: the root command's own options that may come before a subcommand (`bfvr -v restore ...`)
ROOT_OPTIONS = {"-v", "-vv", "--verbose"}


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    text: str  # the bfvr arguments, space-joined (the allowlists' key)
    argv: tuple[str, ...]
    whole: bool  # a whole command (a shell block), not a fragment quoted in prose (`bfvr restore --keep K`)


def _bfvr_argv(words: list[str]) -> list[str] | None:
    """The arguments of a bfvr call (`bfvr ...`, `python -m bfvr.cli ...`, `torchrun ... -m bfvr.cli ...`)."""
    while words and words[0] in ("do", "then", "else"):
        words = words[1:]
    if words[:1] == ["bfvr"]:
        return words[1:]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "bfvr.cli":
            return words[i + 2 :]
    return None


def _split_line(line: str) -> list[list[str]]:
    """Shell words of one logical line, split at ; && || | & (comments dropped)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")  # not <>: `<name>` placeholders
    lex.whitespace_split = True
    lex.commenters = "#"
    out, cur = [], []
    for w in [*lex, ";"]:
        if w in SEPARATORS:
            if cur:
                out.append(cur)
            cur = []
        else:
            if w.startswith("[-"):  # `[--sha256 HEX]`: an optional part
                w = w[1:]
            elif w.endswith("]") and "[" not in w:
                w = w[:-1]
            cur.append(w)
    return out


def doc_commands() -> list[DocCommand]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        name = doc.relative_to(REPO).as_posix()
        for m in SHELL_FENCE.finditer(text):
            first = text[: m.start(1)].count("\n") + 1
            lines = m.group(1).split("\n")
            k = 0
            while k < len(lines):
                start, line = k, lines[k]
                while line.rstrip().endswith("\\") and k + 1 < len(lines):
                    k += 1
                    line = line.rstrip()[:-1] + " " + lines[k]
                k += 1
                for words in _split_line(line):
                    argv = _bfvr_argv(words)
                    if argv is not None:
                        found.append(DocCommand(f"{name}:{first + start}", " ".join(argv), tuple(argv), True))
        prose = ANY_FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for m in INLINE.finditer(prose):
            argv = shlex.split(m.group(1))[1:]
            found.append(DocCommand(f"{name}:{prose[: m.start()].count(chr(10)) + 1}", " ".join(argv),
                                    tuple(argv), False))
    return found


COMMANDS = doc_commands()


def test_the_docs_have_commands_to_check() -> None:
    """The parser finds the documented commands (a broken parser must not make the checks vacuous)."""
    texts = {c.text for c in COMMANDS}
    assert len(COMMANDS) > 150
    assert {"info video.mp4", "models", "train --config configs/lite/broad.yaml"} <= texts
    assert any(c.argv[:2] == ("models", "download") and c.where.startswith("docs/models.md")
               for c in COMMANDS)


# ------------------------------------------------------------------------------------ flags vs --help


@functools.cache
def _root_command():
    import typer

    from bfvr.cli import app

    return typer.main.get_command(app)


def _resolve(argv: tuple[str, ...]):
    """(click command, subcommand path, remaining args) of a bfvr argument list."""
    cmd, path, rest = _root_command(), [], list(argv)
    while rest and rest[0] in ROOT_OPTIONS:
        rest.pop(0)
    while hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:
        path.append(rest[0])
        cmd = cmd.commands[rest.pop(0)]
    return cmd, path, rest


def _help_text(path: tuple[str, ...], capsys: pytest.CaptureFixture[str], cache: dict) -> str:
    if path not in cache:
        capsys.readouterr()
        assert run_cli(*path, "--help") == 0
        cache[path] = capsys.readouterr().out
    return cache[path]


def test_every_documented_flag_is_in_its_commands_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Each documented command names a subcommand, each flag it uses is one of that subcommand's visible
    options and appears in its --help, and (shell blocks, not fragments quoted in prose) the whole argument
    list parses (count of arguments, option values such as numbers) -- without running anything."""
    helps: dict = {}
    problems = []
    for c in COMMANDS:
        cmd, path, rest = _resolve(c.argv)
        if not path and not set(rest) <= ROOT_ONLY:
            problems.append(f"{c.where}: `bfvr {c.text}`: no such subcommand {rest[:1]}")
            continue
        options = {o for p in cmd.params if p.param_type_name == "option" and not p.hidden
                   for o in (*p.opts, *p.secondary_opts)}
        options |= {"--help", "-h"} | (ROOT_ONLY if not path else set())
        text = _help_text(tuple(path), capsys, helps)
        for word in rest:
            if not re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", word):
                continue  # a value (a negative number, `-`), not a flag
            flag = word.split("=")[0]
            if flag not in options:
                problems.append(f"{c.where}: `bfvr {c.text}`: {flag} is no option of `bfvr {' '.join(path)}`")
            elif not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                problems.append(f"{c.where}: {flag} is missing from `bfvr {' '.join(path)} --help`")
        if not c.whole or set(rest) & ROOT_ONLY:
            continue  # a fragment quoted in prose; or eager flags, which exit while parsing
        try:
            cmd.make_context(f"bfvr {' '.join(path)}", list(rest))
        except Exception as e:  # the parser's usage errors (typer's bundled click)
            problems.append(f"{c.where}: `bfvr {c.text}` does not parse: {e}")
    assert not problems, "\n".join(problems)


def test_the_flag_check_can_fail(capsys: pytest.CaptureFixture[str]) -> None:
    """The checks above reject a made-up flag, a flag of another subcommand and a bad value."""
    cmd, path, rest = _resolve(("restore", "in.mp4", "-o", "out.mp4", "--no-such-flag"))
    assert path == ["restore"]
    assert "--no-such-flag" not in {o for p in cmd.params for o in p.opts}
    assert "--recipe" not in _help_text(("restore",), capsys, {})  # degrade's flag
    with pytest.raises(Exception, match="integer"):
        cmd.make_context("bfvr restore", ["in.mp4", "-o", "out.mp4", "--keep", "K"])
    with pytest.raises(Exception, match="Missing"):
        cmd.make_context("bfvr restore", ["-o", "out.mp4"])


# ------------------------------------------------------------------------------ running cheap commands


@dataclass(frozen=True)
class Run:
    inputs: tuple[str, ...]  # names from the `inputs` fixture linked into the command's folder
    outputs: tuple[str, ...] = ()  # files or folders the command must have written


#: cheap commands (well under a second of CPU each on the tiny inputs): run in the default test run
RUN = {
    "--help": Run(()),
    "info video.mp4": Run(("video.mp4",)),
    "models": Run(()),
    "models path stc": Run(()),
    "degrade clip.mp4 lq.mp4 --recipe stc --seed 0": Run(("clip.mp4",), ("lq.mp4", "lq.json")),
    "degrade clips/ lq/ --recipe keep --seed 1": Run(("clips",), ("lq/a.mp4", "lq/b.mp4")),
    "degrade clip.mp4 lq.mp4 --recipe stc --mid": Run(("clip.mp4",), ("lq.mp4",)),
    "degrade clip.mp4 lq.mp4 --recipe stc+flicker-brightness": Run(("clip.mp4",), ("lq.mp4",)),
    "degrade gt.mp4 lq.mp4 --recipe inpaint": Run(("gt.mp4",), ("lq.mp4", "lq.mask.png")),
    "evaluate --pred restored/ --gt gt/ -m psnr,ssim --y --crop-border 4 --max-frames 24":
        Run(("restored", "gt")),
    "profile lq.mp4 out.mp4 gt.mp4 --column 256 -o profile.png": Run(("lq.mp4", "out.mp4", "gt.mp4"),
                                                                      ("profile.png",)),
    "profile lq.mp4 restored.mp4 gt.mp4 --column 256 --labels LQ,ours,GT --scale 4 -o profile.png":
        Run(("lq.mp4", "restored.mp4", "gt.mp4"), ("profile.png",)),
    "compare lq.mp4 out.mp4 gt.mp4 -o side_by_side.mp4": Run(("lq.mp4", "out.mp4", "gt.mp4"),
                                                             ("side_by_side.mp4",)),
    "compare lq.mp4 restored.mp4 gt.mp4 -o side_by_side.mp4": Run(("lq.mp4", "restored.mp4", "gt.mp4"),
                                                                  ("side_by_side.mp4",)),
    "train -c configs/stc/stage1.yaml --set optim.lr=1e-4 --set data.paths=[data/vfhq] --print-config":
        Run(("configs",)),
}

#: commands that take 3-10 s of CPU here (face detection, the default model): marked slow
RUN_SLOW = {
    "restore video.mp4 -o restored.mp4": Run(("video.mp4",), ("restored.mp4",)),
    "restore video.mp4 -o restored.mp4 --model identity": Run(("video.mp4",), ("restored.mp4",)),
    "restore video.mp4 -o out.mp4 --faces-only --strength 0.7": Run(("video.mp4",), ("out.mp4",)),
    "restore crop512.mp4 -o out.mp4 --has-aligned": Run(("crop512.mp4",), ("out.mp4",)),
    "restore in.mp4 -o out.mp4 --detector opencv --detect-every 3 --no-smooth":
        Run(("in.mp4",), ("out.mp4",)),
    "prepare raw_videos/ prepared/ --size 512": Run(("raw_videos",), ("prepared/manifest.jsonl",)),
    "evaluate --pred restored/ --gt gt/ -o report/": Run(("restored", "gt"), ("report/metrics.json",)),
    "evaluate --pred lq/ --no-reference -o report_lq/": Run(("lq",), ("report_lq/metrics.json",)),
}


def test_allowlisted_commands_are_in_the_docs() -> None:
    texts = {c.text for c in COMMANDS}
    stale = sorted((set(RUN) | set(RUN_SLOW)) - texts)
    assert not stale, f"allowlisted here but in no doc any more (update RUN/RUN_SLOW): {stale}"
    assert not set(RUN) & set(RUN_SLOW)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny real inputs under the names the docs use: 8 frames of a real face clip at 288x288 (video.mp4,
    in.mp4, clip.mp4, gt.mp4, restored.mp4, out.mp4, folders clips/, gt/, restored/, raw_videos/), its STC
    degradation (lq.mp4, lq/), a 128x128 face crop (crop512.mp4) and the repository's configs/."""
    from bfvr.degrade import clip_rng, recipe
    from bfvr.io import read_frames, write_video

    root = tmp_path_factory.mktemp("doc-inputs")
    src = shared_path("data", "faces", "lp_driving_d0.mp4")
    video = cut_clip(src, root / "video.mp4", frames=8, size=288)
    lq = root / "lq.mp4"
    frames = read_frames(video)
    write_video(lq, recipe("stc")(frames, clip_rng(0, "doc"))[0], fps=25, crf=18)
    cut_clip(src, root / "crop512.mp4", frames=8, size=128)
    for name in ("in.mp4", "clip.mp4", "gt.mp4", "out.mp4", "restored.mp4"):
        shutil.copy(video if name != "restored.mp4" else lq, root / name)
    folders = {"clips": {"a.mp4": video, "b.mp4": root / "crop512.mp4"}, "gt": {"a.mp4": video},
               "restored": {"a.mp4": lq}, "raw_videos": {"a.mp4": video}, "lq": {"a.mp4": lq}}
    for folder, files in folders.items():
        (root / folder).mkdir()
        for name, src in files.items():
            shutil.copy(src, root / folder / name)
    (root / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    return root


def _run_doc_command(text: str, spec: Run, inputs: Path, tmp_path: Path, monkeypatch) -> None:
    for name in spec.inputs:
        (tmp_path / name).symlink_to(inputs / name)
    monkeypatch.chdir(tmp_path)
    code = run_cli(*shlex.split(text))
    assert code == 0, f"`bfvr {text}` exited with {code}"
    missing = [o for o in spec.outputs if not (tmp_path / o).exists()]
    assert not missing, f"`bfvr {text}` did not write {missing}"


@pytest.mark.parametrize("text", sorted(RUN))
def test_cheap_documented_command_runs(text: str, inputs: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _run_doc_command(text, RUN[text], inputs, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("text", sorted(RUN_SLOW))
def test_documented_command_runs(text: str, inputs: Path, tmp_path: Path, monkeypatch) -> None:
    _run_doc_command(text, RUN_SLOW[text], inputs, tmp_path, monkeypatch)
