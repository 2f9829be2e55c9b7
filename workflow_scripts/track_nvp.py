from omnitrack.pipeline import track_nvp
from omnitrack.workflow.logs import configure_threads, stage_log

with stage_log(snakemake.log[0], "track_nvp"):
    configure_threads(snakemake.threads)
    track_nvp(
        model_path=snakemake.input.model,
        frames_path=snakemake.input.frames,
        truth_path=snakemake.input.get("truth"),
        video=snakemake.wildcards.video,
        mode=snakemake.wildcards.mode,
        out_path=snakemake.output[0],
        grid=snakemake.params.grid,
        device=snakemake.params.device,
        inference=snakemake.params.inference,
    )
