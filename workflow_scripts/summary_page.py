from omnitrack.plots import summary_table
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "summary_page"):
    summary_table(summary_csv=snakemake.input.summary, out_html=snakemake.output[0])
