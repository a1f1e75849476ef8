"""Streams spread over workers that survive a worker's loss (Ray actors), and `streamsam serve`.

    StreamCluster   the driver: places streams, steps them, keeps their states, resumes lost ones
    StreamWorker    one worker's group of streams on a MultiStreamTracker
    Prompt          a prompt for one object, applied on the stream's next frame
    LatestFrames    the newest frame per stream (stale live frames dropped and counted)

Ray is imported only when a cluster starts (pip install 'streamsam[serve]').
"""

from .cluster import StreamCluster
from .latest_frames import LatestFrames
from .worker import Prompt, StreamWorker, WorkerOptions

__all__ = ["LatestFrames", "Prompt", "StreamCluster", "StreamWorker", "WorkerOptions"]
