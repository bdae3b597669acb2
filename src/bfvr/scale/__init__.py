"""Restoring many videos, or one long one, on one machine or a Ray cluster.

* `bfvr.scale.plan`: which videos a folder / list / manifest names, where each output goes, whether an
  output is already complete, and how a long video is cut into segments that join back exactly;
* `bfvr.scale.worker`: `Worker`, one loaded model that restores a whole video, one segment, or joins the
  segments of a video (the same code runs in-process, in a local process pool and in a Ray actor);
* `bfvr.scale.backends`: where the workers run (`inline`, local `processes`, Ray actors);
* `bfvr.scale.batch`: `run_batch`, the job as a whole: plan, skip complete outputs, dispatch, progress
  bars, the summary (printed and written as JSON) and the exit rule.

See docs/scale.md.
"""

from bfvr.scale.batch import BatchOptions, BatchSummary, run_batch
from bfvr.scale.plan import RestoreSettings

__all__ = ["BatchOptions", "BatchSummary", "RestoreSettings", "run_batch"]
