"""Command-line tools that drive the workflow from outside (no Snakemake imports here either)."""
