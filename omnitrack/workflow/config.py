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
        raise InputError(
            source,
            "invalid configuration:\n  " + "\n  ".join(errors),
            hint=f"see {Path(schema_path).name} and README.md, section Configuration",
        )


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that rejects a key repeated in one mapping (PyYAML keeps the last value silently)."""

    source = "config"

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable key: let PyYAML report it
                    continue
                if first is not None:
                    raise InputError(
                        self.source,
                        f"line {line}: key '{key}' appears twice in one mapping (first at "
                        f"line {first}); YAML would silently keep only the last value",
                        hint="remove or merge one of them",
                    )
                seen[key] = line
        return super().construct_mapping(node, deep)


def load_config_file(path: str | Path) -> dict:
    """Read a YAML (or JSON) config file strictly: text that is not UTF-8, a syntax error and a duplicate
    key are InputErrors naming the file and the line."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise InputError(
            path,
            f"is not UTF-8 text: byte 0x{data[e.start]:02x} at line {line}, column {column} cannot be decoded",
            hint="save the file with UTF-8 encoding",
        ) from None
    loader = _StrictLoader(text)
    loader.source = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise InputError(path, f"{where}is not valid YAML ({getattr(e, 'problem', None) or e})") from None
    finally:
        loader.dispose()


def check_config_files(paths) -> None:
    """:func:`load_config_file` on every file (the workflow's config.yaml and each --configfile)."""
    for p in paths:
        load_config_file(p)


def check_device(device: str) -> None:
    """``device: cuda`` on a machine without a usable CUDA GPU is an error before any job runs."""
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise InputError(
            "config",
            "device: cuda, but torch sees no CUDA GPU on this machine (torch.cuda.is_available() is False)",
            hint="set device: auto (CUDA when available, else CPU) or device: cpu; a SLURM run "
            "(remote executor) skips this check on the submit host",
        )


def run_dir(workspace: Path) -> Path:
    """The directory a run of ``workspace`` (``results/<dataset>``) ran in: two levels above it."""
    return Path(workspace).resolve().parent.parent


def video_source(workspace: Path, manifest: dict, video: str) -> Path:
    """The source (e.g. the TAP-Vid pickle) of ``video`` in the manifest of ``workspace``; relative
    paths there are relative to the run's directory."""
    source = Path(manifest["sources"][video])
    return source if source.is_absolute() else run_dir(workspace) / source


def run_config(workspace: Path, configfiles=()) -> dict:
    """The configuration a run of ``workspace`` (``results/<dataset>``) read: the ``config.yaml`` of the
    run's directory (none if it has none), merged with each of ``configfiles`` in order, as Snakemake
    merges ``--configfile`` files. The files are read as the workflow reads them
    (:func:`load_config_file`)."""
    config: dict = {}
    base = run_dir(workspace) / "config.yaml"
    for path in [base] if base.exists() else []:
        config = merge(config, load_config_file(path) or {})
    for path in configfiles:
        config = merge(config, load_config_file(path) or {})
    return config


def merge(base: dict, override: dict) -> dict:
    """``override`` merged into a copy of ``base`` key by key (nested dicts merged, other values
    replaced), as Snakemake merges ``--configfile`` files over the workflow's config."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


if __name__ == "__main__":  # python -m omnitrack.workflow.config FILE...: check config files as the workflow does
    import sys

    try:
        check_config_files(sys.argv[1:])
    except InputError as e:
        sys.exit(str(e))
    print("ok:", ", ".join(sys.argv[1:]))
