"""Interpolate two weights files of one network: alpha x B + (1 - alpha) x A, with B's metadata plus a `mix`
entry naming both files and alpha (how the shipped BFVR-Lite stage-5 file was made, docs/models.md).

    python scripts/mix_weights.py A.safetensors B.safetensors 0.5 OUT.safetensors
"""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    a, b, alpha, out = argv[0], argv[1], float(argv[2]), Path(argv[3])
    if not 0.0 <= alpha <= 1.0:
        print(f"alpha must be between 0 and 1, got {alpha}", file=sys.stderr)
        return 2
    wa, wb = load_file(a), load_file(b)
    if {k: tuple(v.shape) for k, v in wa.items()} != {k: tuple(v.shape) for k, v in wb.items()}:
        print(f"{a} and {b} hold different tensors; they are not one network", file=sys.stderr)
        return 2
    with safe_open(b, "pt") as f:
        meta = dict(f.metadata() or {})
    meta["mix"] = f"{alpha:g} x {Path(b).name} + {1 - alpha:g} x {Path(a).name}"
    mixed = {k: (alpha * wb[k].float() + (1 - alpha) * wa[k].float()).to(wb[k].dtype) for k in wb}
    if out.exists():
        print(f"{out} exists; choose another path", file=sys.stderr)
        return 2
    save_file(mixed, str(out), metadata=meta)
    print(f"{out}: {meta['mix']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
