from omnitrack.workflow.logs import configure_threads, stage_log
from omnitrack.pipeline import extract_features

with stage_log(snakemake.log[0], "features"):
    configure_threads(snakemake.threads)
    extract_features(snakemake.input[0], snakemake.output[0], snakemake.params.spec, snakemake.params.cell,
                     snakemake.params.device)
