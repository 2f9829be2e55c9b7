from omnitrack.pipeline import evaluate
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "evaluate"):
    evaluate(
        prediction_path=snakemake.input.prediction,
        truth_path=snakemake.input.truth,
        video=snakemake.wildcards.video,
        mode=snakemake.wildcards.mode,
        out_path=snakemake.output[0],
    )
