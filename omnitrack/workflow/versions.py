"""Output versions of the pipeline stages.

Snakemake's code trigger sees only a rule's script, not this library. Each rule passes its stage's
version in ``params:``; bump it whenever a change here alters what the stage writes, and Snakemake
reruns that stage and everything downstream. Imported at parse time: keep it free of imports.
"""

STAGE_VERSIONS = {
    "synthetic": 2,
    "prepare": 2,  # 2: per-video source records written only when changed, ids for any name
    "frames": 1,
    "flow": 1,
    "features": 1,
    "masks": 2,
    "matches": 1,
    "depth": 3,  # 2: layers follow the static scene from frame to frame; 3: the static scene is the farthest layer
    "track_chain": 1,
    "optimise": 4,  # 4: models hold the frame shift; coupling axes never repeat (seed 1234 unchanged)
    "track_nvp": 1,
    "evaluate": 3,  # 3: strict JSON (undefined metrics are null, never NaN)
    "visualise": 2,
    "visualise_depth": 1,
    "summary": 1,  # the summaries: num_queries on every row, the original video name, datasets gathered
}
