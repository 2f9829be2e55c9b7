"""What only the Snakemake workflow needs, kept apart from the library: stage versions, config checks,
stage logging, the fault switch the cluster tests use, and the kill-and-resume harness.

The library (everything else under omnitrack/) never imports this package; the workflow's rules and
scripts do.
"""
