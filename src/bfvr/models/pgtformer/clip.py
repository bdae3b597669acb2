"""PGTFormer as a `ClipModel` (see `bfvr.engine.base`): 3-frame windows on a 512x512 face canvas.

On the shared adapter `bfvr.models.adapter.NetClipModel`:

* schedule: a sliding window of 3 frames (`Schedule.window(3, keep)`). ``keep=1`` is the official
  inference: stride 1, output frame i = the middle output of frames (i-1, i, i+1), the first and last frames
  replicated at the ends. ``keep=3`` is the fast variant: the window moves by 3 and all three outputs are
  used (3x fewer forward passes; the outer frames of each window see only one neighbour);
* layout: frames stacked in the batch, ``[(B*3), 3, 512, 512]`` in [0, 1] (the official layout); the canvas
  is the network's nominal resolution (512 for the released weights);
* precision: fp32 is the official numerics; bf16 runs under autocast with channels-last weights;
* output: clamped to [0, 1] (the official inference clamps too);
* faces: the method was trained on crops that are not aligned (the released weights are its stage IV,
  "don't need align"), so the face pipeline gives it the ``proportion`` crop.
"""

from __future__ import annotations

import torch
from torch import nn

from bfvr.engine.base import Schedule
from bfvr.errors import ConfigError, ModelError
from bfvr.models.adapter import NetClipModel


class PGTFormerClipModel(NetClipModel):
    """Restores 3-frame windows with a `bfvr.models.pgtformer.PGTFormer` network."""

    def __init__(
        self,
        net: nn.Module,
        *,
        name: str = "pgtformer",
        keep: int = 1,
        w: float = 1.0,
        canvas: tuple[int, int] | None = None,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
    ) -> None:
        frames = int(getattr(net, "tf", 3))
        if canvas is None:  # the size the network was built for (512 for the released weights)
            res = int(getattr(net, "ddconfig", {}).get("resolution", 512))
            canvas = (res, res)
        if keep not in range(1, frames + 1):
            raise ConfigError(
                f"keep must be between 1 (the official schedule) and the window length {frames}, got {keep}."
            )
        if not 0.0 <= float(w) <= 1.0:
            raise ConfigError(f"the fidelity weight w must be between 0 and 1, got {w}.")
        super().__init__(
            net,
            name=name,
            schedule=Schedule.window(frames, keep),
            canvas=canvas,
            device=device,
            precision=precision,
            layout="NCHW",
            output_map="clamp",
            face_crop_mode="proportion",
        )
        self.w = float(w)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", w={self.w})"

    @property
    def parsing_net(self) -> nn.Module:
        """The network's face-parsing BiSeNet (the face pipeline's ``--paste-mask parsing`` uses it)."""
        return self.net.conditionnet

    def paste_masks(self) -> dict:
        """The paste masks this model's own network gives the face pipeline: ``{"parsing": factory}``,
        ``factory(envelope) -> mask function`` (`bfvr.models.pgtformer.paste_mask.ParsingMasker`)."""
        from bfvr.models.pgtformer.paste_mask import ParsingMasker

        return {"parsing": lambda envelope: ParsingMasker(self.parsing_net, envelope)}

    def check_clip(self, clip: torch.Tensor) -> None:
        super().check_clip(clip)
        n = self.schedule.length
        if clip.shape[0] != n:
            raise ModelError(
                f"{self.name} restores windows of {n} frames (got {clip.shape[0]}); --clip-len does "
                "not apply to it (use --keep for the faster schedule)."
            )

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, w=self.w)[0]
