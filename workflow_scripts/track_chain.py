from omnitrack.pipeline import track_chain
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "track_chain"):
    track_chain(
        frames_path=snakemake.input.frames,
        masks_dir=snakemake.input.masks,
        matches_path=snakemake.input.matches,
        truth_path=snakemake.input.get("truth"),
        video=snakemake.wildcards.video,
        mode=snakemake.wildcards.mode,
        out_path=snakemake.output[0],
        cfg=snakemake.params.chain,
        grid=snakemake.params.grid,
    )
