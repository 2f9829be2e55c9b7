from omnitrack.visualise import visualise_depth
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "visualise_depth"):
    visualise_depth(
        frames_path=snakemake.input.frames,
        depth_path=snakemake.input.depth,
        out_mp4=snakemake.output.mp4,
        preview_path=snakemake.output.preview,
        cfg=snakemake.params.cfg,
    )
