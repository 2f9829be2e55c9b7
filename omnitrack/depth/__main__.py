"""Relative inverse depth of one image with Depth Anything V2 (no workflow needed).

python -m omnitrack.depth IMAGE OUT.npy --weights depth_anything_v2_vits.pth [--encoder vits] [--input-size 518]

Writes float32 [H, W] (the image's size): what the official ``infer_image`` returns for IMAGE as cv2
reads it (larger = nearer; arbitrary scale and shift). The file is written atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def read_image_bgr(path: Path):
    """uint8 BGR [H, W, 3] as cv2.imread gives it; a missing or undecodable file is an InputError."""
    import cv2

    from omnitrack.errors import InputError

    if not path.is_file():
        raise InputError(path, "does not exist" if not path.exists() else "is not a file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(path, "cannot be decoded as an image (unreadable or corrupt)")
    return image


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m omnitrack.depth", description=__doc__.split("\n\n")[0])
    ap.add_argument("image", type=Path, help="an image file cv2 can read")
    ap.add_argument("out", type=Path, help="output .npy: float32 [H, W] relative inverse depth")
    ap.add_argument(
        "--weights",
        type=Path,
        required=True,
        help="the release file, e.g. depth_anything_v2_vits.pth (Hugging Face: depth-anything/Depth-Anything-V2-Small)",
    )
    ap.add_argument("--encoder", default="vits", choices=["vits", "vitb", "vitl"])
    ap.add_argument("--input-size", type=int, default=518, help="shorter side the network sees (official: 518)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    args = ap.parse_args(argv)
    if args.input_size < 14:
        ap.error(f"--input-size must be at least 14 (one patch), got {args.input_size}")

    import numpy as np

    from omnitrack.depth.anything import infer_image, load_depth_anything
    from omnitrack.io import atomic_path

    image = read_image_bgr(args.image)  # before torch is imported: a bad image fails at once
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_depth_anything(args.weights, args.encoder, device)
    depth = infer_image(model, image, args.input_size, device)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, depth.astype(np.float32))
    print(f"{args.out}: float32 {depth.shape[0]}x{depth.shape[1]}, range [{depth.min():.4g}, {depth.max():.4g}]")
    return 0


if __name__ == "__main__":
    from omnitrack.errors import run_command

    run_command(main)
