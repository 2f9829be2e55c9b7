from omnitrack.pipeline import optimise
from omnitrack.workflow.logs import configure_threads, stage_log

with stage_log(snakemake.log[0], "optimise"):
    configure_threads(snakemake.threads)
    optimise(
        frames_path=snakemake.input.frames,
        masks_dir=snakemake.input.masks,
        matches_path=snakemake.input.matches,
        out_path=snakemake.output.model,
        loss_path=snakemake.output.loss,
        nvp=snakemake.params.nvp,
        depth_path=snakemake.input.depth,
    )
