"""Device and precision policy: what `--device` and `--precision` mean.

* `resolve_device("auto")` = the first CUDA GPU if there is one, else Apple MPS, else the CPU;
  `"cpu"`, `"cuda"`, `"cuda:N"`, `"mps"` ask for one explicitly and fail clearly when it is absent.
* `resolve_precision("auto", device)`:
  - CUDA: bf16 when the GPU supports it (Ampere or newer), else fp16;
  - MPS: fp16;
  - CPU: bf16 when the CPU has native bf16 (AMX `amx_bf16` or `avx512_bf16` in /proc/cpuinfo, where
    oneDNN runs bf16 convolutions several times faster than fp32), else fp32 (emulated bf16 is slower
    than fp32 on older CPUs).
  Explicit "fp32", "bf16", "fp16" are honoured where the device can run them (fp16 not on the CPU).
* `uses_channels_last(precision)`: channels-last memory only with bf16/fp16 (or when asked explicitly);
  fp32 keeps the official layout, so fp32 is the parity path everywhere.
* `autocast(device, precision)` is the context a model's forward runs in: mixed precision (weights
  stay fp32, matmuls/convs run in bf16/fp16) for bf16/fp16 and nothing for fp32.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from pathlib import Path

import torch

from bfvr.errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn "auto" | "cpu" | "cuda" | "cuda:N" | "mps" into a torch.device that exists here."""
    dev = _resolve_device(spec)
    log.debug("device %s -> %s", spec, dev)
    return dev


def _resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    if isinstance(spec, torch.device):
        spec = str(spec)
    s = (spec or "auto").strip().lower()
    if s == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if s == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", s)
    if m:
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: no CUDA GPU is available here (torch {torch.__version__}); "
                              "use --device cpu or auto.")
        idx = int(m.group(1) or 0)
        if idx >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) exist; "
                              f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}.")
        return torch.device("cuda", idx)
    if s == "mps":
        if not _mps_available():
            raise ConfigError("--device mps: Apple MPS is not available here; use --device cpu or auto.")
        return torch.device("mps")
    raise ConfigError(f"--device {spec!r} is not understood; use auto, cpu, cuda, cuda:N or mps.")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 natively (AMX or AVX512-BF16), per /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def resolve_precision(spec: str | None, device: torch.device) -> str:
    """Turn "auto" | "fp32" | "bf16" | "fp16" into the precision to run on `device` (see module doc)."""
    s = (spec or "auto").strip().lower()
    if s not in PRECISIONS:
        raise ConfigError(f"--precision {spec!r} is not understood; use auto, fp32, bf16 or fp16.")
    kind = device.type
    if s == "auto":
        if kind == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if kind == "mps":
            return "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if s == "fp16" and kind == "cpu":
        raise ConfigError("--precision fp16 is for GPUs; on the CPU use bf16 (fast with AMX) or fp32.")
    if s == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16: this GPU has no bf16 support; use fp16 or fp32.")
    return s


def check_clip_options(precision: str, clip_len: int | None, overlap: int,
                       device: torch.device | str) -> torch.device:
    """The settings every clip-model adapter checks (precision, overlap < clip_len, no fp16 on the CPU);
    returns the device. Raises ConfigError with the sentence the CLI prints."""
    from bfvr.errors import ConfigError

    if precision not in DTYPES:
        raise ConfigError(f"unknown precision '{precision}'; choose one of: {', '.join(DTYPES)}.")
    if clip_len is not None and not 0 <= overlap < clip_len:
        raise ConfigError(f"overlap must be between 0 and clip_len-1 = {clip_len - 1} frames, got {overlap}.")
    device = torch.device(device)
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("fp16 is for GPUs; on the CPU use --precision bf16 (or fp32).")
    return device


#: the most CPU threads a --threads option (or a config's threads) may ask for: far above any machine's
#: cores, far below the count that makes OpenMP fail to start its threads
MAX_THREADS = 1024


def check_threads(n: int | None, what: str = "--threads", *, zero_ok: bool = False) -> None:
    """Refuse a thread count below 1 (0 too, unless `zero_ok`: 0 then means "torch's default") or above
    `MAX_THREADS`, with one sentence naming `what`."""
    if n is None or (zero_ok and n == 0):
        return
    if not 1 <= n <= MAX_THREADS:
        allowed = (f"0 (torch's default) or 1 to {MAX_THREADS}" if zero_ok
                   else f"at least 1 and at most {MAX_THREADS}")
        raise ConfigError(f"{what} must be {allowed}, got {n}.")


def uses_channels_last(precision: str, channels_last: bool | None = None) -> bool:
    """The one channels-last rule: fp32 keeps the official memory layout (its numerics are the parity path);
    bf16/fp16 use channels-last (faster convolutions); `channels_last` True/False overrides it explicitly."""
    if precision not in DTYPES:
        raise ConfigError(f"unknown precision {precision!r}; use fp32, bf16 or fp16.")
    return precision != "fp32" if channels_last is None else bool(channels_last)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """The mixed-precision context for a forward pass (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
