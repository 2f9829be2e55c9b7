from omnitrack.pipeline import build_masks
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "masks"):
    build_masks(
        frames_path=snakemake.input.frames,
        flow_dir=snakemake.input.flow,
        features_path=snakemake.input.features or None,
        out_dir=snakemake.output[0],
        cfg=snakemake.params.masks,
    )
