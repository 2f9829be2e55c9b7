from omnitrack.workflow.logs import stage_log
from omnitrack.pipeline import build_masks

with stage_log(snakemake.log[0], "masks"):
    build_masks(snakemake.input.frames, snakemake.input.flow, snakemake.input.features or None,
                snakemake.output[0], snakemake.params.masks)
