from omnitrack.workflow.logs import stage_log
from omnitrack.pipeline import evaluate

with stage_log(snakemake.log[0], "evaluate"):
    evaluate(snakemake.input.prediction, snakemake.input.truth, snakemake.wildcards.video,
             snakemake.wildcards.mode, snakemake.output[0])
