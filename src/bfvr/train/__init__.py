"""bfvr.train: training tasks (STC Stage I/II, BFVR-Lite, PGTFormer stages I-IV, DicFace; `tasks.py`) with
typed per-task configs, one method-agnostic trainer, losses, EMA, atomic checkpoints with exact resume, DDP
via torchrun. Entry points: `bfvr train` or

    from bfvr.train import load_config, train
    train(load_config("configs/stc/tiny_stage1.yaml"))
"""

from bfvr.train.config import TrainConfig, config_from_dict, load_config
from bfvr.train.trainer import Trainer, lr_at, train

__all__ = ["TrainConfig", "Trainer", "config_from_dict", "load_config", "lr_at", "train"]
