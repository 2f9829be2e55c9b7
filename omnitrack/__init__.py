"""omnitrack: dense long-range point tracking by per-video optimisation of an invertible deformation.

The package is importable without Snakemake; every pipeline stage is a plain function.
Heavy dependencies (torch, cv2) are imported by the modules that need them, never here.
"""

__version__ = "0.1.0"
