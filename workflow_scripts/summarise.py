from omnitrack.evaluation.summary import combine, write_csv
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "summarise") as log:
    log.info(
        "datasets: %s (configured: %s)", ", ".join(snakemake.params.datasets), ", ".join(snakemake.params.configured)
    )
    write_csv(combine(dataset_csvs=list(snakemake.input)), snakemake.output[0])
