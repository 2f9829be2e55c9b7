"""Configuration checks with messages that name the offending key."""

from __future__ import annotations

from pathlib import Path

import yaml

from omnitrack.errors import InputError


def config_errors(config: dict, schema_path: str | Path) -> list[str]:
    """Every schema violation of ``config`` as 'key.path: message', sorted by key path."""
    from jsonschema import Draft202012Validator

    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = []
    for e in Draft202012Validator(schema).iter_errors(config):
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        errors.append(f"{where}: {e.message}")
    return sorted(set(errors))


def check_config(config: dict, schema_path: str | Path, source: str = "the configuration") -> None:
    """Raise :class:`InputError` listing every problem of ``config``, each with its key."""
    errors = config_errors(config, schema_path)
    if errors:
        raise InputError(source, "invalid configuration:\n  " + "\n  ".join(errors),
                         hint=f"see {Path(schema_path).name} and README.md, section Configuration")


def merge(base: dict, override: dict) -> dict:
    """``override`` merged into a copy of ``base`` key by key (nested dicts merged, other values
    replaced), as Snakemake merges ``--configfile`` files over the workflow's config."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
