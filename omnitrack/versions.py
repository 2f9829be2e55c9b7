"""Output versions of the pipeline stages.

Snakemake's code trigger sees only a rule's script, not this library. Each rule passes its stage's
version in ``params:``; bump it whenever a change here alters what the stage writes, and Snakemake
reruns that stage and everything downstream. Imported at parse time: keep it free of imports.
"""

STAGE_VERSIONS = {
    "synthetic": 2,
    "prepare": 1,
    "frames": 1,
    "flow": 1,
    "features": 1,
    "masks": 2,
    "matches": 1,
    "depth": 1,
    "track_chain": 1,
    "optimise": 2,
    "track_nvp": 1,
    "evaluate": 2,
    "visualise": 2,
    "visualise_depth": 1,
}
