"""Weight files: where they come from, where they are cached, how they are checked and loaded.

* Names -> files: `WEIGHTS`, one `WeightsEntry` per file: its own URLs (GitHub release, Hugging Face file),
  tried in order, the state_dict key inside it, an optional Hugging Face ``config.json`` that goes with it,
  or a path inside the package for weights that ship with bfvr.
* Cache: ``$BFVR_HOME/weights`` (``BFVR_HOME`` defaults to ``~/.cache/bfvr``). Mirrors: an entry's own
  variable (``WeightsEntry.mirror_env``, e.g. ``BFVR_STC_MIRROR``) or ``BFVR_WEIGHTS_BASE_URL`` for every
  file names a folder (``https://...``, ``http://...`` or ``file:///dir``) that replaces the entry's URLs.
* `--weights` takes a file or a Hugging Face model folder (``config.json`` + ``model.safetensors``).
* Downloads stream to a temporary file beside the target with a progress bar and are renamed into
  place only when complete and checked: the size, a sha256 if one is known, and the structure (the file
  loads safely as a state_dict and, for a model that uses it, has exactly its network's keys and shapes:
  `bfvr.models.hub.check_weights_file`). A file that fails never enters the cache or the registry.
* Checksums: no official sha256 is published for these files, so none is pinned (``WeightsEntry.sha256``
  is ``None``). Instead: a sha256 the user passes (``--sha256``) is checked; the sha256 of a file is
  recorded in ``$BFVR_HOME/weights/registry.json`` the first time it is seen (trust on first use) and
  checked on every later load; and the state_dict is checked structurally (exact keys and shapes)
  against the network before loading.
* Loading never unpickles arbitrary objects: ``torch.load(weights_only=True)`` for ``.pth``/``.pt``,
  ``safetensors`` for ``.safetensors``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bfvr.errors import ModelError, WeightsNotFoundError

log = logging.getLogger(__name__)

RELEASE_URL = "https://github.com/Dixin-Lab/BFVR-STC/releases/download/init"
#: the DicFace authors' Hugging Face model repo (`fudan-generative-ai/DicFace_model`), folder `CodeFormer/`
DICFACE_URL = "https://huggingface.co/fudan-generative-ai/DicFace_model/resolve/main/CodeFormer"
#: the PGTFormer authors' Hugging Face model (a hub mixin folder: config.json + model.safetensors)
PGTFORMER_HF = "https://huggingface.co/kepeng/pgtformer-base/resolve/main"
#: the bundled BFVR-Lite weights, relative to the `bfvr.models.lite` package
LITE_WEIGHTS = "weights/bfvr-lite.safetensors"
REGISTRY_NAME = "registry.json"
#: weight file names of a Hugging Face model folder (a hub mixin's `save_pretrained`), in the order looked for
HF_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable (or bundled) weight file."""

    name: str
    filename: str
    #: where to fetch it, tried in order (GitHub release, Hugging Face ``resolve/main`` file, ...)
    urls: tuple[str, ...] = ()
    #: pinned sha256 (hex); None = not known (no official checksum exists): trust on first use
    sha256: str | None = None
    #: key of the state_dict inside the checkpoint dict (None = the file is the state_dict itself)
    key: str | None = "params_ema"
    description: str = ""
    #: path inside the installed `bfvr` package of weights that ship with it (then nothing is downloaded)
    bundled: str | None = None
    #: environment variable naming a mirror for this file only (a folder URL; the file name is appended)
    mirror_env: str | None = None
    #: a Hugging Face ``config.json`` that goes with the weights
    #: (fetched beside them as ``<stem>.config.json``)
    config_urls: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The primary URL ("" for bundled weights)."""
        return self.urls[0] if self.urls else ""


WEIGHTS: dict[str, WeightsEntry] = {
    e.name: e
    for e in (
        WeightsEntry("bfvr-lite", "bfvr-lite.safetensors", key=None,
                     bundled=f"models/lite/{LITE_WEIGHTS}",
                     description="BFVR-Lite, trained by the bfvr project (configs/lite/, docs/models.md); "
                                 "ships with bfvr"),
        # the hub mixin's flat state_dict; the authors' params_ema .pth (Google Drive / BaiduYun,
        # no direct URL) loads the same way with --weights weights.pth
        WeightsEntry("pgtformer", "pgtformer-base.safetensors", (f"{PGTFORMER_HF}/model.safetensors",),
                     config_urls=(f"{PGTFORMER_HF}/config.json",), mirror_env="BFVR_PGTFORMER_MIRROR",
                     description="PGTFormer, released stage-IV weights (kepeng/pgtformer-base)"),
        WeightsEntry("stc", "ckpt-bfvr.pth", (f"{RELEASE_URL}/ckpt-bfvr.pth",), mirror_env="BFVR_STC_MIRROR",
                     description="BFVR-STC stage II, general restoration (2 heads, 9 layers)"),
        # the release file name is misspelt ("defilcker"); keep it, it is the URL
        WeightsEntry("stc-deflicker", "ckpt-defilcker.pth", (f"{RELEASE_URL}/ckpt-defilcker.pth",),
                     mirror_env="BFVR_STC_MIRROR",
                     description="BFVR-STC stage II, brightness de-flickering (4 heads, 6 layers)"),
        WeightsEntry("stc-deflicker-sd", "ckpt-deflickersd.pth", (f"{RELEASE_URL}/ckpt-deflickersd.pth",),
                     mirror_env="BFVR_STC_MIRROR",
                     description="BFVR-STC stage II, pixel de-flickering (4 heads, 6 layers)"),
        # DicFace: 930 MB each (params + params_ema); the network loads params_ema
        WeightsEntry("dicface", "bfr_100k.pth", (f"{DICFACE_URL}/bfr_100k.pth",),
                     mirror_env="BFVR_DICFACE_MIRROR",
                     description="DicFace, blind face video restoration (100k iterations)"),
        WeightsEntry("dicface-inpaint", "inpainting_100k.pth", (f"{DICFACE_URL}/inpainting_100k.pth",),
                     mirror_env="BFVR_DICFACE_MIRROR",
                     description="DicFace, face video inpainting (100k iterations)"),
        WeightsEntry("dicface-color", "color_100k.pth", (f"{DICFACE_URL}/color_100k.pth",),
                     mirror_env="BFVR_DICFACE_MIRROR",
                     description="DicFace, face video colourisation (100k iterations)"),
        # what DicFace training starts from (loaded non-strictly: CodeFormer's own layout), 377 MB
        WeightsEntry("dicface-codeformer", "codeformer.pth", (f"{DICFACE_URL}/codeformer.pth",),
                     mirror_env="BFVR_DICFACE_MIRROR",
                     description="CodeFormer weights, the initialisation of DicFace training "
                                 "(not a video model)"),
    )
}


# ----------------------------------------------------------------------------------------------- paths

def bfvr_home() -> Path:
    """``$BFVR_HOME`` or ``~/.cache/bfvr``."""
    home = os.environ.get("BFVR_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "bfvr"


def weights_dir() -> Path:
    return bfvr_home() / "weights"


def get_entry(name: str) -> WeightsEntry:
    entry = WEIGHTS.get(name)
    if entry is None:
        raise ModelError(f"no downloadable weights are known for '{name}'; "
                         f"choose one of: {', '.join(WEIGHTS)}, or pass --weights PATH.")
    return entry


def cached_path(name: str) -> Path:
    """Where the cache keeps (or will keep) the weights of `name`; for bundled weights, the package file."""
    entry = get_entry(name)
    if entry.bundled:
        return Path(__file__).resolve().parents[1] / entry.bundled
    return weights_dir() / entry.filename


def source_urls(entry: WeightsEntry, urls: tuple[str, ...] | None = None,
                filename: str | None = None) -> list[str]:
    """Where to fetch `entry` (or its `urls`/`filename`, e.g. its config.json), in the order to try: the
    entry's own mirror (``entry.mirror_env``) if set, else ``BFVR_WEIGHTS_BASE_URL`` if set (each a folder URL
    the file name is appended to), else the entry's URLs."""
    name = filename or entry.filename
    for var in (entry.mirror_env, "BFVR_WEIGHTS_BASE_URL"):
        base = os.environ.get(var) if var else None
        if base:
            return [base.rstrip("/") + "/" + name]
    return list(entry.urls if urls is None else urls)


def source_url(entry: WeightsEntry) -> str:
    """The first URL `fetch` tries for `entry` (see `source_urls`)."""
    urls = source_urls(entry)
    return urls[0] if urls else ""


# ------------------------------------------------------------------------------------------- hashing

def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def normalize_sha256(sha: str | None) -> str | None:
    if sha is None:
        return None
    s = sha.strip().lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise ModelError(f"'{sha}' is not a sha256 (64 hex digits); pass the full hex digest.")
    return s


def _registry_path() -> Path:
    return weights_dir() / REGISTRY_NAME


def read_registry() -> dict[str, dict]:
    """The trust-on-first-use records: file name -> {sha256, size, source, recorded}."""
    p = _registry_path()
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"the weights registry {p} is unreadable ({e}); delete it to start afresh.") from e
    return data if isinstance(data, dict) else {}


def _record(filename: str, sha: str, size: int, source: str) -> None:
    """Add (or replace) the record of `filename`: read, change and write ``registry.json`` under its file
    lock, so records written at once by threads or processes are all kept."""
    from bfvr.io.paths import write_atomic

    with _file_lock(REGISTRY_NAME, REGISTRY_NAME):
        reg = read_registry()
        reg[filename] = {"sha256": sha, "size": size, "source": source,
                         "recorded": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        p = _registry_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(p, json.dumps(reg, indent=2, sort_keys=True))
        log.info("recorded the sha256 of %s (%s)", filename, source)


def check_sha256(path: Path, expected: str, what: str) -> str:
    """Raise if the sha256 of `path` differs from `expected` (`what` says where it came from)."""
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(f"{path} has sha256 {actual} but {what} is {expected}; "
                         "the file is corrupt or not the expected one: delete it and fetch it again.")
    return actual


def verify_cached(name: str, path: Path, *, sha256: str | None = None) -> str:
    """Check a cached file against the pinned, the user's and the recorded sha256; record it if new.

    Returns the file's sha256.
    """
    entry = get_entry(name)
    actual = sha256_file(path)
    user = normalize_sha256(sha256)
    if user and actual != user:
        raise ModelError(f"{path} has sha256 {actual}, not the {user} you passed; "
                         f"delete it and run 'bfvr models download {name}' (or check the hash).")
    if entry.sha256 and actual != entry.sha256:
        raise ModelError(f"{path} has sha256 {actual}, not the pinned {entry.sha256}; "
                         f"delete it and run 'bfvr models download {name}'.")
    rec = read_registry().get(entry.filename)
    if rec is None:
        _record(entry.filename, actual, path.stat().st_size, "found in cache")
    elif rec.get("sha256") != actual:
        raise ModelError(f"{path} changed since it was first recorded (sha256 {actual}, recorded "
                         f"{rec.get('sha256')}); delete it and run 'bfvr models download {name}'.")
    return actual


# ------------------------------------------------------------------------------------------ download

#: hosts whose ``<host>/<owner>/<repo>/resolve/<revision>/<path>`` URLs are fetched with `huggingface_hub`
HF_HOSTS = {"huggingface.co", "hf.co"}
_HF_URL = re.compile(r"^(https?://[^/]+)/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def download_retries() -> int:
    """How many times a broken-off download is tried again (``BFVR_DOWNLOAD_RETRIES``, default 2)."""
    try:
        return max(0, int(os.environ.get("BFVR_DOWNLOAD_RETRIES", "2")))
    except ValueError:
        return 2


def _not_found(url: str, dest: Path, reason: object) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"could not download {url} ({reason}); fetch it by other means and save it as {dest} "
        "(or give the file to `bfvr restore --weights PATH`).")


def _hf_location(url: str) -> tuple[str | None, str, str, str, str] | None:
    """(endpoint or None for the Hub's own, repo type, repo id, revision, path in the repo) of a Hugging
    Face file URL, else None."""
    m = _HF_URL.match(url)
    if m is None or urllib.parse.urlsplit(url).netloc not in HF_HOSTS:
        return None
    origin, kind, repo, rev, path = m.groups()
    own = urllib.parse.urlsplit(url).hostname in ("huggingface.co", "hf.co")
    # the Hub's own URLs go where huggingface_hub sends them (HF_ENDPOINT, e.g. a mirror, if set)
    return (None if own else origin), {"datasets": "dataset", "spaces": "space"}.get(kind or "", "model"), \
        repo, rev, urllib.parse.unquote(path)


def _fetch_hf(loc: tuple[str | None, str, str, str, str], url: str, folder: Path, name: str, *,
              progress: bool, timeout: float, desc: str) -> Path:
    """A Hugging Face file through `huggingface_hub` (its retries, its checks of size and etag) into
    `folder`; returns the file."""
    from huggingface_hub import hf_hub_download
    from tqdm import tqdm

    endpoint, kind, repo, rev, path = loc

    class Bar(tqdm):  # huggingface_hub's bar, off with --quiet, named like ours
        def __init__(self, *a: Any, **k: Any) -> None:
            k.update(disable=not progress, desc=desc, leave=False)
            super().__init__(*a, **k)

    import inspect

    bar = {"tqdm_class": Bar} if "tqdm_class" in inspect.signature(hf_hub_download).parameters else {}
    try:
        got = Path(hf_hub_download(repo, path, repo_type=kind, revision=rev, local_dir=folder / "hf",
                                   endpoint=endpoint, etag_timeout=timeout, **bar))
    except Exception as e:  # its HTTP, offline-mode and not-found errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise _not_found(url, folder.parent / name, f"{type(e).__name__}: {first}") from None
    final = folder / name
    os.replace(got, final)
    return final


def _fetch_http(url: str, folder: Path, name: str, *, sha256: str | None, progress: bool, timeout: float,
                desc: str) -> Path:
    """A release asset over HTTP(S) through `pooch` (streamed, tried again `download_retries()` times when it
    breaks off, its sha256 checked when known) into `folder`; returns the file."""
    import pooch
    import requests

    pooch.get_logger().setLevel(max(logging.INFO, log.getEffectiveLevel()))  # its notes only with -v
    bar: Any = False
    if progress:
        from tqdm import tqdm

        class Bar(tqdm):  # pooch asks `if progressbar:`, which a tqdm without a total cannot answer
            def __bool__(self) -> bool:
                return True

        bar = Bar(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)
    fetcher = pooch.create(path=folder, base_url="", registry={name: f"sha256:{sha256}" if sha256 else None},
                           urls={name: url}, retry_if_failed=download_retries(), allow_updates=False)
    try:
        return Path(fetcher.fetch(name, downloader=pooch.HTTPDownloader(progressbar=bar, timeout=timeout)))
    except requests.exceptions.HTTPError as e:
        raise _not_found(url, folder.parent / name, e.response.status_code if e.response is not None
                         else e) from None
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
            requests.exceptions.ReadTimeout) as e:
        raise WeightsNotFoundError(f"the download of {url} broke off ({type(e).__name__}); run the command "
                                   "again.") from None
    except requests.exceptions.RequestException as e:
        raise _not_found(url, folder.parent / name, type(e).__name__) from None
    except ValueError as e:  # pooch: the sha256 differs
        got = re.search(r"got\s+'?([0-9a-f]{64})", str(e))
        raise ModelError(f"the file downloaded from {url} has sha256 {got.group(1) if got else 'another'}, "
                         f"not {sha256}; it was not saved: check the URL or the hash.") from None
    finally:
        if bar is not False:
            bar.close()


def _fetch_local(url: str, folder: Path, name: str) -> Path:
    """A ``file://`` URL (a mirror folder on a disk): copied into `folder`; returns the file."""
    import shutil

    src = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    final = folder / name
    try:
        with open(src, "rb") as fin, open(final, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except OSError as e:
        raise _not_found(url, folder.parent / name, e.strerror or type(e).__name__) from None
    return final


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, progress: bool = True,
             timeout: float = 60.0, desc: str | None = None,
             check: Callable[[Path, str], None] | None = None) -> str:
    """Fetch `url` to `dest`; check `sha256` if given, then `check(temp file, url)` (raises `ModelError`:
    e.g. the structural check of `fetch`); return the sha256.

    Hugging Face file URLs (`HF_HOSTS`) go through `huggingface_hub`, other HTTP(S) URLs (GitHub release
    assets, mirrors) through `pooch` (retries: `download_retries`), ``file://`` URLs are copied. All land in
    a new hidden folder beside `dest` and are renamed into place with the umask's permissions only when
    complete and checked (`bfvr.io.paths.publish`). Raises `WeightsNotFoundError` when the URL cannot be
    fetched and `ModelError` on a checksum or structure mismatch; `dest` is untouched unless everything
    succeeded.
    """
    from bfvr.io.paths import publish, remove_temp, temp_beside

    dest = Path(dest)
    expected = normalize_sha256(sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    desc = desc or dest.name
    folder = temp_beside(dest, folder=True)  # `.<name>.XXXXXXXX.partial/`: the file keeps its real suffix
    try:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        hf = _hf_location(url)
        log.info("downloading %s from %s", dest.name, url)
        if scheme == "file":
            tmp = _fetch_local(url, folder, dest.name)
        elif hf is not None:
            tmp = _fetch_hf(hf, url, folder, dest.name, progress=progress, timeout=timeout, desc=desc)
        elif scheme in ("http", "https"):
            tmp = _fetch_http(url, folder, dest.name, sha256=expected, progress=progress, timeout=timeout,
                              desc=desc)
        else:
            raise _not_found(url, dest, f"bfvr fetches http://, https:// and file:// URLs, not {scheme}://")
        actual = sha256_file(tmp)
        if expected and actual != expected:
            raise ModelError(f"the file downloaded from {url} has sha256 {actual}, not {expected}; "
                             "it was not saved: check the URL or the hash.")
        if check is not None:
            try:
                check(tmp, url)
            except ModelError as e:
                raise ModelError(f"{str(e).rstrip('.')}; it was not saved in the cache.") from None
        publish(tmp, dest)
        return actual
    finally:
        remove_temp(folder)


@contextlib.contextmanager
def _file_lock(name: str, what: str) -> Iterator[None]:
    """Hold the lock ``$BFVR_HOME/locks/<name>.lock`` (`filelock`: across threads and processes); say once
    when another holder is waited for."""
    from filelock import FileLock, Timeout

    folder = bfvr_home() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{name}.lock"), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("waiting for another download of %s to finish", what)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def fetch(name: str, *, sha256: str | None = None, force: bool = False, progress: bool = True,
          offline: bool = False) -> Path:
    """Return the cached file of `name`, downloading it first if needed (never when `offline`). Two
    downloads of one file (threads or processes) do not race: the second waits for the first and then
    finds the file in the cache."""
    entry = get_entry(name)
    path = cached_path(name)
    if entry.bundled:
        if not path.is_file():
            raise WeightsNotFoundError(f"the bundled weights of '{name}' are missing from this installation "
                                       f"({path}); reinstall bfvr or pass --weights PATH.")
        if sha256:
            check_sha256(path, normalize_sha256(sha256), "the --sha256 you passed")
        return path
    if path.exists() and not force:
        verify_cached(name, path, sha256=sha256)
        return path
    urls = source_urls(entry)
    if not urls:
        raise WeightsNotFoundError(f"no download address is known for '{name}'; pass --weights PATH.")
    if offline:
        raise WeightsNotFoundError(
            f"the weights of '{name}' are not in the cache and --offline forbids downloading; "
            f"download {urls[0]} and save it as {path}, or pass --weights PATH.")
    with _file_lock(entry.filename, f"'{name}' ({entry.filename})"):
        if path.exists() and not force:  # another thread or process fetched it while this one waited
            verify_cached(name, path, sha256=sha256)
            return path
        expected = normalize_sha256(sha256) or entry.sha256
        if entry.config_urls:  # the Hugging Face config.json first: small, and the weights need it
            _download_first(source_urls(entry, entry.config_urls, "config.json"), hf_config_path(path),
                            progress=progress, desc=f"{name}: config.json")

        def structure(tmp: Path, url: str) -> None:  # before the file enters the cache and the registry
            from bfvr.models.hub import check_weights_file

            check_weights_file(name, tmp, like=path, what=f"the weights downloaded from {url}")

        actual, url = _download_first(urls, path, sha256=expected, progress=progress,
                                      desc=f"{name}: {entry.filename}", check=structure)
        _record(entry.filename, actual, path.stat().st_size, url)
    return path


def _download_first(urls: Sequence[str], dest: Path, **kw: Any) -> tuple[str, str]:
    """Download the first of `urls` that answers; (sha256, url). A checksum mismatch stops at once."""
    errors = []
    for url in urls:
        try:
            return download(url, dest, **kw), url
        except WeightsNotFoundError as e:
            errors.append(str(e))
    if len(errors) == 1:
        raise WeightsNotFoundError(errors[0])
    raise WeightsNotFoundError(f"none of the {len(urls)} addresses of {dest.name} answered: "
                               + " | ".join(errors))


def hf_config_path(weights: str | os.PathLike) -> Path:
    """Where a Hugging Face ``config.json`` for `weights` lives: ``config.json`` beside a file named like the
    Hub's (``model.safetensors``, ``pytorch_model.bin``) or inside a snapshot folder, else
    ``<stem>.config.json`` beside it (how `fetch` caches it)."""
    p = Path(weights)
    if p.is_dir():
        return p / "config.json"
    if p.name in HF_WEIGHT_NAMES:
        return p.parent / "config.json"
    return p.with_name(p.stem + ".config.json")


def read_hf_config(weights: str | os.PathLike) -> dict[str, Any] | None:
    """The Hugging Face ``config.json`` that goes with `weights`, or None when there is none."""
    p = hf_config_path(weights)
    if not p.is_file():
        return None
    try:
        cfg = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{p} is not a readable JSON config ({e}); delete it or fetch it again.") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{p} holds a {type(cfg).__name__}, not a config mapping.")
    return cfg


def resolve(name: str, *, weights: str | os.PathLike | None = None, offline: bool = False,
            sha256: str | None = None, progress: bool = True) -> Path:
    """The weights file to load for model `name`: `weights` if given, else the cache (downloading)."""
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():  # a Hugging Face model folder (config.json + weights)
            found = [path / n for n in HF_WEIGHT_NAMES if (path / n).is_file()]
            if not found:
                raise WeightsNotFoundError(f"the folder {path} holds none of {', '.join(HF_WEIGHT_NAMES)}; "
                                           "pass a weights file or a Hugging Face model folder.")
            path = found[0]
        if not path.is_file():
            raise WeightsNotFoundError(f"the weights file {path} does not exist; pass the path of a "
                                       f"downloaded checkpoint (or omit --weights to use the cache).")
        user = normalize_sha256(sha256)
        if user:
            check_sha256(path, user, "the --sha256 you passed")
        return path
    return fetch(name, sha256=sha256, progress=progress, offline=offline)


# ------------------------------------------------------------------------------------------- loading

def load_state_dict(path: str | os.PathLike, key: str | None = "params_ema"):
    """Read a state_dict from ``.safetensors`` or a ``.pth``/``.pt`` (weights_only); pick `key` if present.

    Accepted layouts: ``{key: state_dict, ...}`` (official BFVR-STC: ``params_ema``), ``{"params": ...}``
    when `key` is absent, or a flat ``{name: tensor}`` state_dict.
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelError(f"{path} is not a readable safetensors file ({e}).") from e
    obj = torch_load(path)
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path} holds a {type(obj).__name__}, not a state_dict.")
    for k in ([key] if key else []) + ["params"]:
        if k in obj and isinstance(obj[k], Mapping):
            obj = obj[k]
            break
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = ", ".join(list(map(str, obj))[:5])
        raise ModelError(f"{path} has no state_dict under '{key}' (top-level keys: {keys}); "
                         "pass a checkpoint saved with params_ema or a plain state_dict.")
    return dict(obj)


def load_error_reason(e: BaseException) -> str:
    """Why torch.load / safetensors refused a file, in our words (never torch's advice to turn off
    `weights_only`, which would run whatever code the file holds)."""
    text = " ".join(str(e).split()).lower()
    if "unsupported global" in text or "allowlist" in text or "safe_globals" in text:
        return ("it holds pickled Python objects besides tensors (a whole model, an optimizer or code), "
                "which bfvr does not unpickle because that could run anything")
    if "unsupported operand" in text or "invalid load key" in text or "central directory" in text \
            or "zip" in text or "eof" in text or "ran out of input" in text or "truncated" in text \
            or "magic number" in text or "corrupt" in text:
        return "it is corrupt, truncated or not a PyTorch file"
    if isinstance(e, OSError):
        return f"it cannot be read ({getattr(e, 'strerror', None) or type(e).__name__})"
    return f"it is not a valid checkpoint ({type(e).__name__})"


def torch_load(path: str | os.PathLike[str]) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU; any failure becomes a `ModelError` that says why
    in one sentence."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, zip errors, disallowed globals, I/O
        raise ModelError(f"{path} cannot be loaded: {load_error_reason(e)}; use a plain tensor checkpoint "
                         "(.pth/.pt state_dict) or a .safetensors file.") from None


def state_dict_problems(state: Mapping[str, object], expected: Mapping[str, Sequence[int]]) -> list[str]:
    """Describe each difference between `state` (name -> tensor or shape) and `expected` (name -> shape)."""
    problems: list[str] = []
    for k, shape in expected.items():
        if k not in state:
            problems.append(f"missing {k}")
            continue
        v = state[k]
        got = tuple(v.shape) if hasattr(v, "shape") else tuple(v)  # type: ignore[arg-type]
        if got != tuple(shape):
            problems.append(f"{k} has shape {list(got)}, expected {list(shape)}")
    problems += [f"unexpected {k}" for k in state if k not in expected]
    return problems


def check_state_dict(state: Mapping[str, object], expected: Mapping[str, Sequence[int]], *,
                     what: str = "the weights", model: str = "the model", show: int = 4) -> None:
    """Raise `ModelError` naming the first `show` mismatching keys unless keys and shapes match exactly."""
    problems = state_dict_problems(state, expected)
    if problems:
        more = f" (and {len(problems) - show} more)" if len(problems) > show else ""
        raise ModelError(f"{what} do not fit {model}: {len(problems)} mismatching keys: "
                         f"{'; '.join(problems[:show])}{more}; pass the checkpoint made for this model.")


def check_dtypes(state: Mapping[str, Any], expected: Mapping[str, Any], *, what: str = "the weights",
                 show: int = 3) -> None:
    """Raise `ModelError` when a tensor the network holds as floating point comes as another kind (int8,
    bool, complex, ...): such a file is not a checkpoint of the network, whatever its shapes."""
    bad = [f"{k} is {str(v.dtype).removeprefix('torch.')}" for k, v in state.items()
           if k in expected and expected[k].is_floating_point and not v.is_floating_point()]
    if bad:
        more = f" (and {len(bad) - show} more)" if len(bad) > show else ""
        raise ModelError(f"{what} hold {len(bad)} tensors that are not floating point where the network "
                         f"needs real numbers: {'; '.join(bad[:show])}{more}; pass a float checkpoint "
                         "(fp32, fp16 or bf16).")
