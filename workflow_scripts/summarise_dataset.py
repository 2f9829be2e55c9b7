from omnitrack.evaluation.summary import video_rows, write_csv
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "summarise_dataset"):
    table = video_rows(
        dataset=snakemake.wildcards.dataset, rows=snakemake.params.rows, settings=snakemake.params.settings
    )
    write_csv(table, snakemake.output[0])
