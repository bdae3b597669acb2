"""Where bfvr may write: the one place every command asks before it writes or replaces anything.

The rule: bfvr never deletes or rewrites a file it did not create. Concretely

* an output must not be an input, and an output folder must not be, contain, or lie inside an input
  folder (`check_separate`), for every command that takes inputs and an output;
* `--overwrite` replaces only what bfvr itself wrote (`check_replaceable`, the one rule for single files
  and batches): a video carrying bfvr's container tag `VIDEO_TAG`, a PNG-frame folder that bfvr made (it
  holds the marker file `FRAMES_MARKER` and nothing but frames named `NNNNNN.png`) or an empty folder, a
  JSON file whose object says ``"tool": "bfvr"``, a PNG image with bfvr's text chunk (`mark_png`). A
  symbolic link is never replaced. Anything else in the way is refused with one sentence;
* files are written to a new hidden temporary file beside the output (`temp_beside`: created by
  mkstemp, so with O_EXCL under a random name, never an existing file or a link) and renamed into place
  (`atomic_output`, `write_atomic`): a predictable name that is a link is never opened for writing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bfvr.errors import InputError, OutputError

log = logging.getLogger(__name__)

#: written into every PNG-frame folder bfvr creates: `--overwrite` tells its own output from a user's folder
FRAMES_MARKER = ".bfvr-frames"
#: the container tag every video bfvr writes carries (value "bfvr <version>"): how `--overwrite` tells a
#: video bfvr wrote from anyone else's
VIDEO_TAG = "bfvr_writer"
#: the PNG text chunk (keyword, value) bfvr puts into the single images it writes (`mark_png`)
PNG_TEXT = (b"Software", b"bfvr")
#: the file names bfvr gives PNG frames
FRAME_NAME = re.compile(r"\d{6}\.png")
#: scheme://... (also with the double slash collapsed, as pathlib does: 'http:/host')
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+:/")


def _abs(p: str | os.PathLike[str]) -> Path:
    """Absolute path with symlinks resolved as far as the path exists (no error for missing parts)."""
    return Path(os.path.realpath(Path(p).expanduser()))


def _inside(a: Path, b: Path) -> bool:
    """True when `a` is `b` or lies inside it (both absolute)."""
    return a == b or b in a.parents


def _same_file(a: Path, b: Path) -> bool:
    try:
        return _abs(a) == _abs(b) or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_not_url(path: str | os.PathLike[str]) -> None:
    """Refuse http://, rtsp://, ... inputs with one sentence (bfvr reads local files only)."""
    if _URL.match(str(path)) and not Path(path).exists():
        url = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]+):/(?!/)", r"\1://", str(path))  # undo pathlib's '//' -> '/'
        raise InputError(f"'{url}' is a URL; bfvr reads local files only, so download it first "
                         "(e.g. with curl or yt-dlp) and pass the file.")


def check_separate(inputs: Iterable[str | os.PathLike[str] | None], out: str | os.PathLike[str], *,
                   out_is_dir: bool, what: str = "output") -> None:
    """Refuse an `out` that would touch an input.

    File output: it must not be any input file (nor lie inside an input folder when that folder is read
    as frames). Folder output (`out_is_dir`): it must not be, contain, or lie inside an input folder, and
    must not contain an input file. A name too long for any folder is refused too (`check_name_fits`)."""
    check_name_fits(out, what)
    o = _abs(out)
    for inp in inputs:
        if inp is None:
            continue
        ip = Path(inp).expanduser()
        if not ip.exists():
            continue
        i = _abs(ip)
        if ip.is_dir():
            if out_is_dir and (_inside(o, i) or _inside(i, o)):
                rel = "is" if o == i else ("lies inside" if _inside(o, i) else "contains")
                raise OutputError(f"the {what} folder '{out}' {rel} the input folder '{inp}'; "
                                  "choose a separate folder so the inputs stay untouched.")
            if not out_is_dir and _inside(o, i):
                raise OutputError(f"the {what} '{out}' lies inside the input folder '{inp}'; "
                                  "choose a path outside it so the inputs stay untouched.")
        else:
            if _same_file(ip, Path(out).expanduser()):
                raise OutputError(f"the {what} '{out}' is the input; choose another {what} path.")
            if out_is_dir and _inside(i, o):
                raise OutputError(f"the {what} folder '{out}' contains the input '{inp}'; "
                                  "choose a separate folder so the input stays untouched.")


def check_distinct_outputs(plan: Iterable[tuple[str | os.PathLike[str], Iterable[str | os.PathLike[str]]]]
                           ) -> None:
    """Refuse, before any work, two inputs that would write one path: `plan` gives each input with every
    path it writes (its output and sidecars). Two clips `a.mp4` and `a.mov` (or `x/a.mp4`) going to one
    `OUT/a.mp4` would otherwise stop half-way on a file the run just wrote, or with --overwrite replace the
    first one's output with the second's. Checked with and without --overwrite."""
    owner: dict[str, str] = {}
    for inp, outs in plan:
        for out in outs:
            key = os.path.normcase(os.path.abspath(Path(out).expanduser()))
            first = owner.setdefault(key, str(inp))
            if first != str(inp):
                raise OutputError(f"the inputs '{first}' and '{inp}' would both be written to '{out}'; "
                                  "rename one of them or process them separately.")


def check_writable_folder(folder: str | os.PathLike[str], what: str = "output") -> None:
    """Refuse (one sentence) a folder that cannot be created or written into: the nearest existing part of
    its path must be a folder this process may write into. Nothing is created."""
    existing = _abs(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create the folder '{folder}' for the {what} ('{existing}' is a file); "
                          "choose another location.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"the folder '{existing}' is not writable, so the {what} cannot go into "
                          f"'{folder}'; choose a writable location.")


def check_output_file(out: str | os.PathLike[str], what: str = "output") -> None:
    """Refuse a file output that is an existing folder, or whose folder cannot be created or written."""
    p = Path(out).expanduser()
    if p.is_dir():
        raise OutputError(f"'{out}' is a folder; give a file path for the {what}.")
    check_writable_folder(p.parent, what)


def check_output_folder(out: str | os.PathLike[str], what: str = "output") -> None:
    """Refuse a folder output that is an existing file, or that cannot be created or written into."""
    p = Path(out).expanduser()
    if (p.exists() or p.is_symlink()) and not p.is_dir():
        raise OutputError(f"'{out}' is a file; give a folder path for the {what}.")
    check_writable_folder(p, what)


def make_folder(folder: str | os.PathLike[str], what: str = "output") -> Path:
    """`mkdir -p folder`, or one sentence when the system refuses (a read-only place, a file in the way)."""
    p = Path(folder).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder '{folder}' for the {what} "
                          f"({e.strerror or type(e).__name__}); choose a writable location.") from None
    return p


def is_own_frames_dir(folder: Path) -> bool:
    """True for a folder bfvr may replace: empty, or its marker plus nothing but its PNG frame names."""
    try:
        names = [e.name for e in os.scandir(folder)]
    except OSError:
        return False
    if not names:
        return True
    if FRAMES_MARKER not in names:
        return False
    return all(n == FRAMES_MARKER or (FRAME_NAME.fullmatch(n) and (folder / n).is_file()
                                      and not (folder / n).is_symlink()) for n in names)


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def is_own_video(path: Path) -> bool:
    """True for a video file bfvr wrote: a regular file whose container carries the tag `VIDEO_TAG`."""
    if not _regular(path):
        return False
    import av

    try:
        with av.open(str(path)) as c:
            tags = {k.lower(): v for k, v in (c.metadata or {}).items()}
    except Exception:  # not a video at all (text, an image, a truncated file, ...)
        return False
    return str(tags.get(VIDEO_TAG, "")).startswith("bfvr")


def is_own_json(path: Path) -> bool:
    """True for a JSON file bfvr wrote: a regular file holding an object with ``"tool": "bfvr"``."""
    if not _regular(path):
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("tool") == "bfvr"


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        yield kind, data[pos + 8:pos + 8 + length]
        pos += 12 + length


def mark_png(png: bytes) -> bytes:
    """The PNG `png` (as cv2.imencode gives it) with bfvr's text chunk `PNG_TEXT` after its header, so that
    `--overwrite` can later tell it is bfvr's (`is_own_png`)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    end = 8 + 12 + struct.unpack(">I", png[8:12])[0]  # after IHDR
    body = b"tEXt" + PNG_TEXT[0] + b"\0" + PNG_TEXT[1]
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return png[:end] + chunk + png[end:]


def is_own_png(path: Path) -> bool:
    """True for a PNG image bfvr wrote: a regular file with the text chunk `PNG_TEXT` (`mark_png`)."""
    if not _regular(path):
        return False
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)  # the text chunk sits right after the header
    except OSError:
        return False
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    for kind, body in _png_chunks(data):
        if kind == b"tEXt" and body == PNG_TEXT[0] + b"\0" + PNG_TEXT[1]:
            return True
        if kind in (b"IDAT", b"IEND"):
            break
    return False


#: kind -> test of "bfvr wrote this" (`check_replaceable`); "file": any regular file (a report or an image
#: whose content bfvr cannot recognise; still never a link)
_OWN = {"video": is_own_video, "images": is_own_frames_dir, "json": is_own_json, "png": is_own_png,
        "file": _regular}


def check_replaceable(out: Path, kind: str) -> None:
    """With --overwrite: refuse to replace anything bfvr did not write (see module doc). `kind`: "video",
    "images" (a PNG-frame folder), "json", "png" or "file". The one rule of every command, for single
    outputs and batches alike."""
    if not (out.exists() or out.is_symlink()):
        return
    if out.is_symlink():
        raise OutputError(f"'{out}' is a symbolic link, so --overwrite will not replace it (bfvr replaces "
                          "only files it wrote); choose another output path.")
    if kind == "images":
        if not out.is_dir():
            raise OutputError(f"'{out}' is a file; choose a folder path (no suffix) for PNG frames.")
        if not is_own_frames_dir(out):
            raise OutputError(f"'{out}' holds files bfvr did not write, so --overwrite will not replace it; "
                              "choose a new or empty folder for the PNG frames.")
        return
    if out.is_dir():
        raise OutputError(f"'{out}' is a folder; choose a file path for the {kind}.")
    if not out.is_file():
        raise OutputError(f"'{out}' is not a regular file; choose another output path.")
    if not _OWN[kind](out):
        raise OutputError(f"'{out}' was not written by bfvr, so --overwrite will not replace it; move it "
                          "away or choose another output path.")


def remove_own_frames_dir(folder: Path) -> None:
    """Delete a PNG-frame folder bfvr wrote (its marker and frames only); refuses anything else."""
    if not is_own_frames_dir(folder):
        raise OutputError(f"'{folder}' changed while writing and now holds files bfvr did not write; "
                          "it was left as it is (choose another output folder).")
    for e in os.scandir(folder):
        os.unlink(e.path)
    folder.rmdir()


def _umask_at_import() -> int:
    """The umask when this module was first imported (the only time bfvr calls `os.umask`: imports run
    under the import lock, before a library user's threads can be writing files through bfvr)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_IMPORT_UMASK = _umask_at_import()


def current_umask() -> int:
    """The process's umask, read without changing it: the ``Umask:`` line of ``/proc/self/status``
    (Linux 4.7+), else the umask seen when bfvr was imported. Never flips the process-wide umask (which
    `os.umask` can only read by setting it: a file another thread creates in between would get mode
    0666/0777)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _IMPORT_UMASK


def set_default_mode(path: str | os.PathLike[str]) -> None:
    """Give a file (0666) or folder (0777) the permissions the umask allows, as a plain `open` would:
    temporary-file helpers (mkstemp, mkdtemp, safetensors) create them 0600/0700."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~current_umask())


#: the longest file name, in bytes, when the filesystem does not say (ext4, xfs, btrfs, tmpfs: 255)
NAME_MAX = 255
#: random characters mkstemp/mkdtemp put into a temporary name
_RANDOM_CHARS = 8


def _name_max(folder: Path) -> int:
    """The longest file name `folder` takes (`NAME_MAX` when it does not exist or say)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def _fs_bytes(name: str) -> int:
    return len(os.fsencode(name))


def short_name(name: str, extra: int, folder: str | os.PathLike[str] | None = None) -> str:
    """`name` when `extra` more bytes around it still make a legal file name in `folder`, else its first
    characters, ``~`` and 12 hex digits of a hash of the whole name (always the same for the same name),
    short enough that they do. How the hidden names bfvr derives from an output's name (temporary files,
    segment folders, locks) stay legal for every legal output name (up to 255 bytes)."""
    limit = _name_max(Path(folder)) if folder is not None else NAME_MAX
    if _fs_bytes(name) + extra <= limit:
        return name
    import hashlib

    tag = "~" + hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
    keep = name
    while keep and _fs_bytes(keep) + len(tag) + extra > limit:
        keep = keep[:-1]
    return keep + tag


def check_name_fits(path: str | os.PathLike[str], what: str = "output") -> None:
    """Refuse with one sentence a path with a name longer than a folder takes (e.g. a 256-byte output name,
    or the sidecar `<out>.json` of a 255-byte `<out>.mp4`), instead of the OS's "File name too long" in
    the middle of the work (or an internal error)."""
    path = Path(path).expanduser()
    folder = path.parent
    while not os.path.isdir(folder) and folder != folder.parent:  # isdir: False for a too long name
        folder = folder.parent
    limit = _name_max(folder)
    for part in path.parts:
        n = _fs_bytes(part)
        if n > limit:
            shown, over = f"{part[:24]}...{part[-12:]}", n - limit
            raise OutputError(f"the {what} name '{shown}' is {n} bytes long, more than the {limit} a folder "
                              f"takes; choose a name at least {over} byte{'s' if over > 1 else ''} shorter.")


def temp_parts(out: str | os.PathLike[str], *, folder: bool = False) -> tuple[str, str]:
    """(prefix, suffix) of the temporary names `temp_beside` gives `out`: ``.<stem>.`` and
    ``.partial<suffix>`` (`folder`: ``.<name>.`` and ``.partial``), with 8 random characters between
    them. A name too long for that is shortened (`short_name`), so any legal output name works."""
    out = Path(out)
    stem, suffix = (out.name, "") if folder else (out.stem, out.suffix)
    if _fs_bytes(suffix) > 32:  # an unusual 'suffix' (a dot late in a long name): part of the stem
        stem, suffix = out.name, ""
    tail = ".partial" + suffix
    extra = 2 + _RANDOM_CHARS + _fs_bytes(tail)
    return f".{short_name(stem, extra, out.parent)}.", tail


def temp_beside(out: str | os.PathLike[str], *, folder: bool = False) -> Path:
    """A new hidden temporary file beside `out`, ``.<stem>.XXXXXXXX.partial<suffix>`` (`folder=True`: a
    folder ``.<name>.XXXXXXXX.partial``; a name too long for that is shortened, `temp_parts`), for bfvr
    to write and then rename into place. mkstemp/mkdtemp create it with O_EXCL under a random name, so
    it is never an existing file or a link placed there."""
    out = Path(out)
    prefix, suffix = temp_parts(out, folder=folder)
    if folder:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=out.parent))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=out.parent)
    os.close(fd)
    return Path(tmp)


def publish(tmp: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Rename the finished temporary file or folder `tmp` (`temp_beside`) to `out`, first giving it the
    permissions the umask allows (`set_default_mode`: mkstemp/mkdtemp made it 0600/0700). A link at `out`
    is replaced, never followed. The last step of every atomic write in bfvr."""
    set_default_mode(tmp)
    os.replace(tmp, out)
    log.debug("renamed %s to %s", tmp, out)
    return Path(out)


def remove_temp(tmp: str | os.PathLike[str] | None) -> None:
    """Remove a temporary file or folder `temp_beside` made (nothing when it is gone already)."""
    if tmp is None:
        return
    tmp = Path(tmp)
    if tmp.is_dir() and not tmp.is_symlink():
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_output(out: str | os.PathLike[str], *, folder: bool = False) -> Iterator[Path]:
    """``with atomic_output(out) as tmp:`` write the file `tmp` (`temp_beside`; `folder`: fill the folder
    `tmp`); when the block ends without an error it is renamed to `out` with the usual permissions
    (`publish`), else removed. The one atomic-write helper of bfvr (`write_atomic` for bytes and text)."""
    out = Path(out)
    tmp = temp_beside(out, folder=folder)
    try:
        yield tmp
        publish(tmp, out)
    except BaseException:
        remove_temp(tmp)
        raise


def write_atomic(out: str | os.PathLike[str], data: str | bytes, *, fsync: bool = False) -> Path:
    """Write `data` (text: UTF-8) to `out` through `atomic_output`; `fsync`: make it durable before the
    rename (checkpoints)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_output(out) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return Path(out)
