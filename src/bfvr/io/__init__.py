"""Streaming video I/O on PyAV: lazy RGB frames with timestamps in, H.264 (+ copied audio) out.

```python
from bfvr.io import open_video, VideoWriter
with open_video("in.mp4") as r, VideoWriter("out.mp4", fps=r.info.fps, time_base=r.info.time_base,
                                             vfr=r.info.vfr, audio_from="in.mp4") as w:
    for chunk in r.chunks(16):
        w.write(chunk.frames, chunk.pts)
```
"""

from bfvr.io.reader import (
    AVReader,
    ImageFolderReader,
    VideoReader,
    list_videos,
    open_video,
    probe,
    read_frames,
)
from bfvr.io.types import Chunk, VideoInfo
from bfvr.io.writer import VideoWriter, prepare_output, write_video

__all__ = [
    "AVReader", "Chunk", "ImageFolderReader", "VideoInfo", "VideoReader", "VideoWriter", "list_videos",
    "open_video", "prepare_output", "probe", "read_frames", "write_video",
]
