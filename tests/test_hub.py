"""Model hub and weights: names, cache paths, offline errors, downloads (local server only), TOFU,
sha256 checks, safe loading and structural checks. Never touches the internet."""

from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import threading
import urllib.request
from pathlib import Path

import pytest
import torch

from bfvr.errors import ConfigError, ModelError, WeightsNotFoundError
from bfvr.models import hub
from bfvr.models import weights as W
from helpers import run_cli


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Each test gets its own empty BFVR_HOME, no mirror, and any real-internet access fails the test."""
    monkeypatch.setenv("BFVR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BFVR_WEIGHTS_BASE_URL", raising=False)
    real_urlopen = urllib.request.urlopen

    def guarded(url, *a, **k):
        u = url if isinstance(url, str) else url.full_url
        assert u.startswith(("http://127.0.0.1", "file://")), f"test tried to reach the network: {u}"
        return real_urlopen(url, *a, **k)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)
    import httpx
    import requests

    real_request, real_send = requests.Session.request, httpx.Client.send

    def guarded_request(self, method, url, *a, **k):  # pooch (release assets)
        assert str(url).startswith("http://127.0.0.1"), f"test tried to reach the network: {url}"
        return real_request(self, method, url, *a, **k)

    def guarded_send(self, request, *a, **k):  # huggingface_hub
        url = str(request.url)
        assert url.startswith("http://127.0.0.1"), f"test tried to reach the network: {url}"
        return real_send(self, request, *a, **k)

    monkeypatch.setattr(requests.Session, "request", guarded_request)
    monkeypatch.setattr(httpx.Client, "send", guarded_send)
    monkeypatch.setenv("BFVR_DOWNLOAD_RETRIES", "0")  # a failure fails at once (one test turns retries on)
    return tmp_path / "home"


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/srv; yields (folder, base URL)."""
    root = tmp_path / "srv"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):  # keep the test output clean
            pass

        def do_GET(self):  # noqa: N802
            if self.path.endswith("/truncated.pth") or self.path == "/ckpt-defilcker.pth":
                # announces 1000 bytes, sends 10, closes: a broken-off download
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"0123456789")
                self.wfile.flush()
                self.close_connection = True
                return
            super().do_GET()

    yield from _serve(Handler, root)


def _serve(handler, root: Path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _payload(root: Path, name: str = "ckpt-bfvr.pth") -> tuple[bytes, str]:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several read blocks
    (root / name).write_bytes(data)
    return data, hashlib.sha256(data).hexdigest()


#: a small STC stage-II layout (same code paths as the official one, a few MB instead of 284)
SMALL_STC = dict(nf=32, ch_mult=(1, 1, 1, 1), res_blocks=1, dim_embd=64, codebook_size=64, connect_list=(),
                 n_head=2, n_layers=2)


@pytest.fixture
def small_stc(monkeypatch):
    """Model 'stc' with the SMALL_STC network, so a real stc checkpoint (what the structural check of a
    download accepts) is small."""
    import dataclasses

    monkeypatch.setitem(hub.MODELS, "stc", dataclasses.replace(hub.MODELS["stc"], config=SMALL_STC))


def _stc_payload(root: Path, name: str = "ckpt-bfvr.pth", **change) -> tuple[bytes, str]:
    """An official-layout checkpoint ({"params_ema": state_dict}) of the (small_stc) 'stc' network, several
    read blocks long; `change`: name -> shape of entries to give another shape."""
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) for k, s in hub.expected_shapes("stc").items()}
    sd.update({k: torch.zeros(s) for k, s in change.items()})
    torch.save({"params_ema": sd}, root / name)
    data = (root / name).read_bytes()
    assert len(data) > 2 * (1 << 20)
    return data, hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------- names

def test_names_and_cache_paths(home):
    names = [s.name for s in hub.available_models()]
    assert names[:2] == ["bfvr-lite", "identity"]  # the bundled default first
    assert {"stc", "stc-deflicker", "stc-deflicker-sd"} <= set(names)
    assert W.cached_path("stc") == home / "weights" / "ckpt-bfvr.pth"
    assert W.cached_path("stc-deflicker").name == "ckpt-defilcker.pth"  # the release's spelling
    assert W.cached_path("stc-deflicker-sd").name == "ckpt-deflickersd.pth"
    assert W.get_entry("stc").url == "https://github.com/Dixin-Lab/BFVR-STC/releases/download/init/ckpt-bfvr.pth"
    assert all(e.sha256 is None for e in W.WEIGHTS.values())  # no official checksum exists: none invented
    assert hub.MODELS["stc"].config["n_head"] == 2 and hub.MODELS["stc"].config["n_layers"] == 9
    for n in ("stc-deflicker", "stc-deflicker-sd"):
        assert (hub.MODELS[n].config["n_head"], hub.MODELS[n].config["n_layers"]) == (4, 6)


def test_default_home(monkeypatch):
    monkeypatch.delenv("BFVR_HOME")
    assert W.bfvr_home() == Path.home() / ".cache" / "bfvr"


def test_unknown_model_is_clear():
    with pytest.raises(ModelError, match=r"unknown model 'stcx'; choose one of: bfvr-lite, identity, .*stc"):
        hub.load_model("stcx")


def test_identity_still_loads():
    m = hub.load_model("identity")
    x = torch.rand(3, 3, 8, 8)
    assert m.restore_clip(x) is x
    with pytest.raises(ConfigError):
        hub.load_model("identity", weights="x.pth")
    # an option the model does not have is refused, not silently dropped (the API has no capability check)
    with pytest.raises(ConfigError, match=r"model 'identity' has no option temporal_filter; it takes none"):
        hub.load_model("identity", temporal_filter=3)


def test_offline_missing_weights_says_where_to_put_them(home):
    with pytest.raises(WeightsNotFoundError) as e:
        hub.load_model("stc", offline=True)
    msg = str(e.value)
    assert "--offline" in msg
    assert str(home / "weights" / "ckpt-bfvr.pth") in msg
    assert "https://github.com/Dixin-Lab/BFVR-STC/releases/download/init/ckpt-bfvr.pth" in msg
    assert "\n" not in msg


def test_missing_local_weights_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        hub.load_model("stc", weights=str(tmp_path / "nope.pth"), offline=True)


def test_cli_offline_error_is_one_line(capsys, tmp_path):
    assert run_cli("models", "verify", str(tmp_path / "nope.pth"), "--model", "stc") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bfvr: error:") and "does not exist" in err and "\n" not in err


# -------------------------------------------------------------------------------------- downloads

def test_download_from_local_server_records_tofu(server, home, monkeypatch, small_stc):
    root, base = server
    data, sha = _stc_payload(root)
    monkeypatch.setenv("BFVR_WEIGHTS_BASE_URL", base)
    path = W.fetch("stc", progress=False)
    assert path == home / "weights" / "ckpt-bfvr.pth"
    assert path.read_bytes() == data
    rec = W.read_registry()["ckpt-bfvr.pth"]
    assert rec["sha256"] == sha and rec["size"] == len(data) and rec["source"] == f"{base}/ckpt-bfvr.pth"
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt-bfvr.pth", "registry.json"]
    # later loads verify against the record: unchanged file passes (no network needed)...
    monkeypatch.setenv("BFVR_WEIGHTS_BASE_URL", "http://127.0.0.1:9/unreachable")
    assert W.fetch("stc", offline=True) == path
    assert W.fetch("stc", sha256=sha.upper(), offline=True) == path
    # ...a modified file does not
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"X")
    with pytest.raises(ModelError, match="changed since it was first recorded"):
        W.resolve("stc", offline=True)


def test_download_with_sha256(server, home, monkeypatch, small_stc):
    root, base = server
    data, sha = _stc_payload(root)
    monkeypatch.setenv("BFVR_WEIGHTS_BASE_URL", base)
    bad = "0" * 64
    with pytest.raises(ModelError, match="not saved"):
        W.fetch("stc", sha256=bad, progress=False)
    wdir = home / "weights"
    assert not (wdir / "ckpt-bfvr.pth").exists()
    assert not [p for p in wdir.iterdir() if p.name.startswith(".")]  # temp file removed
    with pytest.raises(ModelError, match="not a sha256"):
        W.fetch("stc", sha256="abc", progress=False)
    assert W.fetch("stc", sha256=sha, progress=False).read_bytes() == data


def test_download_failures_are_clear(server, home, monkeypatch):
    root, base = server
    monkeypatch.setenv("BFVR_WEIGHTS_BASE_URL", base)
    with pytest.raises(WeightsNotFoundError, match=r"could not download .*ckpt-deflickersd.pth .*save it as"):
        W.fetch("stc-deflicker-sd", progress=False)  # 404
    with pytest.raises(WeightsNotFoundError, match="broke off|stopped after"):
        W.fetch("stc-deflicker", progress=False)  # server sends 10 of 1000 bytes
    assert not (home / "weights" / "ckpt-defilcker.pth").exists()
    assert not [p for p in (home / "weights").iterdir() if p.name.startswith(".")]


def test_download_file_url(tmp_path, home):
    src = tmp_path / "mirror"
    src.mkdir()
    data, sha = _payload(src)
    dest = home / "weights" / "x.pth"
    assert W.download((src / "ckpt-bfvr.pth").as_uri(), dest, sha256=sha, progress=False) == sha
    assert dest.read_bytes() == data


@pytest.mark.parametrize("served", ["text", "other_shapes"])
def test_download_that_is_not_the_checkpoint_never_enters_the_cache(tmp_path, home, monkeypatch, capsys,
                                                                    small_stc, served):
    """`bfvr models download stc` from a file:// mirror serving a 17-byte text file (or a checkpoint of
    other shapes): one sentence, exit 2, and neither the cache nor the registry holds it."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    if served == "text":
        (mirror / "ckpt-bfvr.pth").write_bytes(b"404: Not Found\n\n\n")  # 17 bytes
    else:
        _stc_payload(mirror, **{"quantize.embedding.weight": (3, 3)})
    monkeypatch.setenv("BFVR_STC_MIRROR", mirror.as_uri())
    assert run_cli("models", "download", "stc", "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bfvr: error:") and "\n" not in err and "Traceback" not in err
    assert "not saved" in err and f"{mirror.as_uri()}/ckpt-bfvr.pth" in err
    assert ("not a PyTorch file" if served == "text" else "quantize.embedding.weight") in err, err
    wdir = home / "weights"
    assert not (wdir / "ckpt-bfvr.pth").exists() and not (wdir / "registry.json").exists()
    assert not [p for p in wdir.iterdir() if p.name.startswith(".")]  # no temporary file left
    # the real checkpoint from the same mirror is cached and recorded
    data, sha = _stc_payload(mirror)
    assert run_cli("models", "download", "stc", "--quiet") == 0
    assert (wdir / "ckpt-bfvr.pth").read_bytes() == data
    assert W.read_registry()["ckpt-bfvr.pth"]["sha256"] == sha


def test_cached_file_placed_by_hand_is_trusted_on_first_use(home):
    p = W.cached_path("stc")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"hand-placed")
    assert W.resolve("stc", offline=True) == p
    assert W.read_registry()["ckpt-bfvr.pth"]["sha256"] == hashlib.sha256(b"hand-placed").hexdigest()
    assert W.read_registry()["ckpt-bfvr.pth"]["source"] == "found in cache"
    with pytest.raises(ModelError, match="not the .* you passed"):
        W.resolve("stc", offline=True, sha256="1" * 64)


def test_user_weights_with_sha256(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    sha = hashlib.sha256(b"abc").hexdigest()
    assert W.resolve("stc", weights=f, sha256=sha) == f
    with pytest.raises(ModelError, match="sha256"):
        W.resolve("stc", weights=f, sha256="2" * 64)


def test_cli_download_path_list(server, home, monkeypatch, capsys, small_stc):
    root, base = server
    data, sha = _stc_payload(root)
    monkeypatch.setenv("BFVR_WEIGHTS_BASE_URL", base)
    assert run_cli("models", "path", "stc") == 0
    out = capsys.readouterr()
    assert out.out.strip() == str(home / "weights" / "ckpt-bfvr.pth") and "not downloaded" in out.err
    assert run_cli("models", "download", "stc", "--quiet", "--sha256", sha) == 0
    assert sha in capsys.readouterr().out
    assert run_cli("models") == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("stc "))
    assert " yes " in line and "MB" in line
    assert next(ln for ln in out.splitlines() if ln.startswith("stc-deflicker ")).split()[1] == "no"


def _umask_mode(folder: bool = False) -> int:
    from bfvr.io.paths import current_umask

    return (0o777 if folder else 0o666) & ~current_umask()


@pytest.fixture
def counting_server(tmp_path):
    """A local server that counts GETs per path, serves slowly (so two downloads overlap) and answers 503 to
    the first `fail_first` GETs: (folder, base URL, counts, settings)."""
    import collections
    import time

    root = tmp_path / "srv2"
    root.mkdir()
    counts: collections.Counter = collections.Counter()
    settings = {"fail_first": 0, "delay": 0.0}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            counts[self.path] += 1
            if sum(counts.values()) <= settings["fail_first"]:
                self.send_error(503)
                return
            time.sleep(settings["delay"])
            super().do_GET()

    for root_, base in _serve(Handler, root):
        yield root_, base, counts, settings


def test_broken_download_is_tried_again(counting_server, home, monkeypatch, small_stc):
    """pooch's retries: a server that fails the first request is asked again (BFVR_DOWNLOAD_RETRIES)."""
    root, base, counts, settings = counting_server
    data, sha = _stc_payload(root)
    monkeypatch.setenv("BFVR_WEIGHTS_BASE_URL", base)
    settings["fail_first"] = 1
    with pytest.raises(WeightsNotFoundError, match="could not download .*503"):
        W.fetch("stc", progress=False)  # retries off (the fixture): one try
    counts.clear()
    monkeypatch.setenv("BFVR_DOWNLOAD_RETRIES", "1")
    path = W.fetch("stc", progress=True, sha256=sha)  # with the progress bar pooch drives
    assert path.read_bytes() == data and counts["/ckpt-bfvr.pth"] == 2
    # the cached file has the permissions a plain `open` gives (the temporary file was 0600)
    assert path.stat().st_mode & 0o777 == _umask_mode()


def test_concurrent_downloads_of_one_file_wait_for_each_other(counting_server, home, monkeypatch, small_stc):
    """Four threads fetch one file at once: it is downloaded once, the others wait and find it in the cache;
    the registry holds its record and nothing temporary is left."""
    root, base, counts, settings = counting_server
    data, sha = _stc_payload(root)
    monkeypatch.setenv("BFVR_WEIGHTS_BASE_URL", base)
    settings["delay"] = 0.3
    results, errors = [], []

    def one():
        try:
            results.append(W.fetch("stc", progress=False))
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 4 and all(p.read_bytes() == data for p in results)
    assert counts["/ckpt-bfvr.pth"] == 1
    assert W.read_registry()["ckpt-bfvr.pth"]["sha256"] == sha
    assert sorted(p.name for p in (home / "weights").iterdir()) == ["ckpt-bfvr.pth", "registry.json"]


def test_registry_records_written_at_once_are_all_kept(home):
    """registry.json is read, changed and written under a file lock: 16 threads recording 16 files at
    once leave 16 records (without the lock, concurrent read-modify-writes lose some)."""
    threads = [threading.Thread(target=W._record, args=(f"f{i}.pth", f"{i:064x}", i, "test"))
               for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    reg = W.read_registry()
    assert sorted(reg) == sorted(f"f{i}.pth" for i in range(16))
    assert all(reg[f"f{i}.pth"]["sha256"] == f"{i:064x}" for i in range(16))


def test_hugging_face_urls_go_through_huggingface_hub(tmp_path, home, monkeypatch):
    """A ``<host>/<owner>/<repo>/resolve/<rev>/<file>`` URL of a Hugging Face host is fetched with
    huggingface_hub (here a local stand-in for the Hub answering its HEAD/GET protocol); a missing file is
    one sentence and leaves nothing behind."""
    root = tmp_path / "hub"
    root.mkdir()
    data = os.urandom(200_000)
    (root / "model.safetensors").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    seen = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _answer(self, body: bool) -> None:
            seen.append((self.command, self.path))
            parts = self.path.split("/")  # /owner/repo/resolve/main/<file>
            f = root / parts[-1]
            if parts[3:5] != ["resolve", "main"] or not f.is_file():
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(f.stat().st_size))
            self.send_header("ETag", f'"{sha}"')
            self.send_header("X-Repo-Commit", "a" * 40)
            self.end_headers()
            if body:
                self.wfile.write(f.read_bytes())

        def do_HEAD(self):  # noqa: N802
            self._answer(False)

        def do_GET(self):  # noqa: N802
            self._answer(True)

    for _, base in _serve(Hub, root):
        monkeypatch.setattr(W, "HF_HOSTS", W.HF_HOSTS | {base.removeprefix("http://")})
        dest = home / "weights" / "x.safetensors"
        assert W.download(f"{base}/someone/model/resolve/main/model.safetensors", dest, progress=True,
                          sha256=sha) == sha
        assert dest.read_bytes() == data and dest.stat().st_mode & 0o777 == _umask_mode()
        assert ("HEAD", "/someone/model/resolve/main/model.safetensors") in seen  # the Hub's protocol
        with pytest.raises(WeightsNotFoundError, match=r"could not download .*missing.safetensors .*save"):
            W.download(f"{base}/someone/model/resolve/main/missing.safetensors", home / "weights" / "y.pth",
                       progress=False)
        assert sorted(p.name for p in (home / "weights").iterdir()) == ["x.safetensors"]


# ---------------------------------------------------------------------------------------- loading

def test_load_state_dict_formats(tmp_path):
    from safetensors.torch import save_file

    sd = {"a.weight": torch.randn(2, 3), "a.bias": torch.randn(2)}
    torch.save({"params_ema": sd, "params": {}}, tmp_path / "ema.pth")
    torch.save({"params": sd}, tmp_path / "params.pth")
    torch.save(sd, tmp_path / "flat.pt")
    save_file(sd, str(tmp_path / "ours.safetensors"))
    for name in ("ema.pth", "params.pth", "flat.pt", "ours.safetensors"):
        got = W.load_state_dict(tmp_path / name)
        assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd), name


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_refuses_arbitrary_pickles(tmp_path):
    torch.save({"params_ema": {"w": torch.zeros(1)}, "obj": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="does not unpickle") as e:
        W.load_state_dict(tmp_path / "evil.pth")
    assert "weights_only" not in str(e.value)  # never torch's advice to turn the safety off
    (tmp_path / "junk.pth").write_bytes(pickle.dumps([1, 2]) + b"junk")
    with pytest.raises(ModelError):
        W.load_state_dict(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="not a readable safetensors"):
        W.load_state_dict(tmp_path / "junk.safetensors")
    torch.save({"other": {"w": torch.zeros(1)}}, tmp_path / "nokey.pth")
    with pytest.raises(ModelError, match="no state_dict under 'params_ema'"):
        W.load_state_dict(tmp_path / "nokey.pth")


def test_check_state_dict_names_first_mismatches():
    expected = {f"k{i}": (2, 2) for i in range(10)}
    W.check_state_dict({k: torch.zeros(s) for k, s in expected.items()}, expected)
    state = {k: torch.zeros(s) for k, s in expected.items() if k not in ("k0", "k1")}
    state["k5"] = torch.zeros(3, 2)
    state["extra"] = torch.zeros(1)
    with pytest.raises(ModelError) as e:
        W.check_state_dict(state, expected, what="the weights in f.pth", model="'stc'")
    msg = str(e.value)
    assert "4 mismatching keys" in msg
    assert "missing k0" in msg and "missing k1" in msg and "k5 has shape [3, 2], expected [2, 2]" in msg
    assert "unexpected extra" in msg
    with pytest.raises(ModelError, match=r"and 6 more"):
        W.check_state_dict({}, expected, show=4)
