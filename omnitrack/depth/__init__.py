"""Per-frame depth for the nvp fit's depth start.

- :mod:`omnitrack.depth.model`: Depth Anything V2 (DINOv2 ViT + DPT head, the official parameter names).
- :mod:`omnitrack.depth.anything`: loading a release file, the official preprocessing, one image
  (:func:`infer_image`, BGR as cv2 reads it) and a video's frames (:func:`infer_video`, RGB).
- :mod:`omnitrack.depth.convert`: relative inverse depth -> the fit's depth units (:func:`fit_depth`).
- ``python -m omnitrack.depth IMAGE OUT.npy --weights FILE``: one image, without the workflow.

Importing this package does not import torch.
"""

from omnitrack.depth.anything import (
    LICENCES,
    WEIGHTS_URLS,
    infer_image,
    infer_video,
    load_depth_anything,
    network_size,
    video_depth,
)
from omnitrack.depth.convert import align_frames, fit_depth

__all__ = [
    "LICENCES",
    "WEIGHTS_URLS",
    "align_frames",
    "fit_depth",
    "infer_image",
    "infer_video",
    "load_depth_anything",
    "network_size",
    "video_depth",
]
