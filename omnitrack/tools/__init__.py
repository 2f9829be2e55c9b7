"""Command-line tools for experiments on a run's files (ablations, flow and depth accuracy); no Snakemake imports."""
