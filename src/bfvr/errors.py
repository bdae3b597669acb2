"""Errors a user can cause. The CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class BfvrError(Exception):
    """Base class: the message says what went wrong and what to do."""

    exit_code = 2


class InputError(BfvrError):
    """The input path is missing, unreadable, not a video, or has no usable frames."""


class OutputError(BfvrError):
    """The output cannot be written (exists without --overwrite, folder not writable, ...)."""


class ModelError(BfvrError):
    """Unknown model name, bad configuration or incompatible weights."""


class WeightsNotFoundError(ModelError):
    """Weights are needed but not present locally (and cannot or may not be downloaded)."""


class DependencyError(BfvrError):
    """An optional dependency (dlib, mediapipe, a metric backbone's weights, ...) is missing."""


class ConfigError(BfvrError):
    """A configuration file or option value is invalid."""


class TrainingError(BfvrError, FloatingPointError):
    """A training run broke: it diverged (a non-finite loss, or gradients that stay non-finite), or its
    processes hold different weights."""
