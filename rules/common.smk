# Helpers shared by rules/*.smk: dataset manifests, every input function, per-stage params and resources.
# Paths are written once, where they are made; functions here refer to `rules.<name>.output`
# and `rules.<name>.benchmark` (evaluated when the DAG is built, after every rule is defined).
# Cheap at parse time: nothing here imports torch or reads video data.
import json
import os
from omnitrack.data.videos import check_dataset_path, source_stamp
from omnitrack.errors import InputError
from omnitrack.model.config import INFERENCE_KEYS as NVP_INFERENCE_KEYS
from omnitrack.model.config import resolve as resolve_nvp
from omnitrack.pipeline import source_record
from omnitrack.workflow.versions import STAGE_VERSIONS


def selected_datasets():
    """The datasets to run: `run_datasets` if set (a --configfile can narrow config.yaml's set), else all."""
    names = config.get("run_datasets") or sorted(config["datasets"])
    unknown = sorted(set(names) - set(config["datasets"]))
    if unknown:
        raise ValueError(f"run_datasets names {unknown}, which are not in datasets: {sorted(config['datasets'])}")
    return {name: config["datasets"][name] for name in names}


def check_datasets():
    """Dataset paths and settings that cannot work, reported before any job runs (cheap: no video is read)."""
    for name, spec in DATASETS.items():
        if spec["kind"] == "videos":
            check_dataset_path(spec["path"], spec.get("frame_ext"))
            spacing = config["grid"]["spacing"]
            if spacing / 2 >= spec["max_side"]:
                raise InputError(
                    "config",
                    f"grid.spacing {spacing} yields no query point on any video of dataset "
                    f"'{name}' (working frames are at most max_side = {spec['max_side']} px)",
                    hint=f"use a spacing below {2 * spec['max_side']}",
                )
        elif (
            spec["kind"] == "tapvid" and not any(c in spec["path"] for c in "*?[") and not os.path.exists(spec["path"])
        ):
            raise InputError(
                spec["path"],
                f"does not exist (datasets.{name}.path)",
                hint="download the TAP-Vid pickle and set the path to it (README.md, Adding a TAP-Vid dataset)",
            )


DATASETS = selected_datasets()
check_datasets()
if "nvp" in config["methods"]:
    resolve_nvp(config["nvp"])  # unknown or invalid nvp keys fail before anything runs
if "motion_init_sep" in config["nvp"]:
    raise ValueError(
        "config: nvp.motion_init_sep has no effect in the workflow: the depth stage gives the fit its start "
        "(use `depth: {method: motion, motion: {sep: <value>}}` for the motion start, or depth.method: layers)"
    )
if config["flow"]["gaps"] is not None:
    if 1 not in config["flow"]["gaps"]:
        raise ValueError(f"config: flow.gaps must include 1 (got {config['flow']['gaps']}): chaining steps by gap 1")
    if not config["masks"]["chain"]:
        raise ValueError("config: flow.gaps needs masks.chain: true (the masks stage chains the gaps not computed)")
GT_KINDS = ("synthetic", "tapvid")


wildcard_constraints:
    dataset="|".join(sorted(DATASETS)),
    video=r"[\w-]+",  # ids (omnitrack.data.names): a name with dots or spaces maps to one
    method="chain|nvp",
    mode="first|strided|grid",
    purpose="filter|match",


def version(stage):
    return STAGE_VERSIONS[stage]


def fill(pattern, **wildcards):
    """A rule's output or benchmark ``pattern`` with the given wildcards filled in (the others stay)."""
    return expand(pattern, **wildcards, allow_missing=True)[0]


def dataset_spec(wildcards):
    return DATASETS[wildcards.dataset]


def manifest(dataset):
    """The dataset's manifest (written by the prepare_dataset checkpoint): the video list. Only the
    dataset-level rules depend on it; a video's stages depend on its own source record."""
    path = checkpoints.prepare_dataset.get(dataset=dataset).output.manifest
    with open(path) as f:
        return json.load(f)


def videos_of(dataset):
    return manifest(dataset)["videos"]


def modes_of(dataset):
    return config["query_modes"] if DATASETS[dataset]["kind"] in GT_KINDS else ["grid"]


def mem_for(base, per_input_mb):
    """mem_mb that grows with the job's input size and doubles on each retry."""
    return lambda wildcards, input, attempt: int((base + per_input_mb * input.size_mb) * attempt)


def runtime_for(base, per_input_mb):
    """runtime in minutes that grows with the job's input size and with each retry."""
    return lambda wildcards, input, attempt: int((base + per_input_mb * input.size_mb) * attempt)


def feature_spec(wildcards):
    """The features.<purpose> section; the raft method without weights takes the flow's RAFT checkpoint."""
    spec = dict(config["features"][wildcards.purpose])
    if spec["method"] == "raft" and spec.get("weights") is None:
        spec["weights"] = config["flow"]["raft"]["weights"]
    return spec


def features_gpu(wildcards):
    """The learned descriptors run on a GPU."""
    return int(config["features"][wildcards.purpose]["method"] in ("dino", "dinov2"))


def filter_features(wildcards):
    if config["features"]["filter"]["method"] == "none":
        return []
    return fill(rules.features.output[0], dataset=wildcards.dataset, video=wildcards.video, purpose="filter")


DEPTH = config["depth"]
DEPTH_MODEL = DEPTH["method"] == "depth_anything_v2"  # the only method that runs a network (gpu=1)


def depth_params(wildcards):
    """The depth section, only the keys of the chosen method (changing another method's keys reruns nothing)."""
    method = DEPTH["method"]
    keys = {
        "layers": ["layers", "seed"],
        "motion": ["motion", "seed"],
        "none": [],
        "depth_anything_v2": ["weights", "encoder", "input_size", "batch_size", "max_ratio"],
    }[method]
    return {"method": method, **{k: DEPTH[k] for k in keys}}


def depth_input(wildcards):
    """Frames, plus the masks directory for the methods that read flows (layers, motion)."""
    files = {"frames": fill(rules.frames.output[0], dataset=wildcards.dataset, video=wildcards.video)}
    if DEPTH["method"] in ("layers", "motion"):
        files["masks"] = fill(rules.masks.output[0], dataset=wildcards.dataset, video=wildcards.video)
    return files


def track_rule(method):
    """The rule that writes ``method``'s predictions (track_chain, track_nvp)."""
    return getattr(rules, f"track_{method}")


def prediction_of(wildcards):
    """The prediction file of {dataset}, {method}, {video}, {mode}."""
    return fill(
        track_rule(wildcards.method).output[0], dataset=wildcards.dataset, video=wildcards.video, mode=wildcards.mode
    )


def stage_benchmarks(dataset, video, method, mode):
    """The rules' own benchmark files of every stage that produced one video's prediction, by the name of
    its summary column (seconds_<name>): the rule's name, the features rule by purpose."""
    stages = {
        "frames": (rules.frames, {}),
        "flow": (rules.flow, {}),
        "masks": (rules.masks, {}),
        "features": (rules.features, {"purpose": "match"}),
        "matches": (rules.matches, {}),
    }
    if config["features"]["filter"]["method"] != "none":
        stages["features_filter"] = (rules.features, {"purpose": "filter"})
    if method == "nvp":
        stages["depth"] = (rules.depth, {})
        stages["optimise"] = (rules.optimise, {})
    stages[f"track_{method}"] = (track_rule(method), {"mode": mode})
    return {name: fill(rule.benchmark, dataset=dataset, video=video, **extra) for name, (rule, extra) in stages.items()}


def summary_settings(wildcards):
    """Columns that say how every row was produced."""
    feats = config["features"]
    return {
        "flow": config["flow"]["method"],
        "window": config["flow"]["window"],
        "filter_features": feats["filter"]["method"],
        "match_features": feats["match"]["method"],
        "depth": config["depth"]["method"] if "nvp" in config["methods"] else None,
    }


def prepare_input(wildcards):
    spec = DATASETS[wildcards.dataset]
    if spec["kind"] == "synthetic":
        return fill(rules.render_synthetic.output[0], dataset=wildcards.dataset)
    return spec["path"]


def prepare_params(wildcards):
    """What the video list depends on (not the per-video settings: changing those never relists)."""
    spec = DATASETS[wildcards.dataset]
    return {k: v for k, v in spec.items() if k in ("kind", "path", "videos", "frame_ext")}


def manifest_path(dataset):
    return fill(rules.prepare_dataset.output.manifest, dataset=dataset)


def video_source(wildcards):
    """The per-video input of the frames stage: its source record (after the checkpoint listed it),
    written by prepare_dataset beside the manifest only when its content changes (docs/formats.md)."""
    m = manifest(wildcards.dataset)
    if wildcards.video not in m["videos"]:
        raise InputError(
            manifest_path(wildcards.dataset), f"has no video '{wildcards.video}' (its videos: {', '.join(m['videos'])})"
        )
    record = str(source_record(manifest_path(wildcards.dataset), wildcards.video, DATASETS[wildcards.dataset]["kind"]))
    if not os.path.exists(record):
        raise InputError(
            record,
            "is missing (prepare_dataset writes it)",
            hint=f"rm {manifest_path(wildcards.dataset)} && snakemake --cores N",
        )
    return record


def frames_spec(wildcards):
    """The frames stage's settings: the dataset's, minus what only says which videos there are."""
    return {k: v for k, v in DATASETS[wildcards.dataset].items() if k not in ("path", "videos")}


def frames_source_stamp(wildcards):
    """For user videos: a digest of the source file(s) on disk, so a replaced video reruns its frames
    (the record holds only its path). Benchmark sources are records with the data itself."""
    if DATASETS[wildcards.dataset]["kind"] != "videos":
        return None
    record = video_source(wildcards)
    with open(record) as f:
        path = json.load(f)["path"]
    return source_stamp(path, DATASETS[wildcards.dataset].get("frame_ext"))


def gt_input(wildcards):
    """{"truth": source record} for datasets with ground truth (the benchmark query modes read it), else {}."""
    if DATASETS[wildcards.dataset]["kind"] not in GT_KINDS:
        return {}
    return {"truth": video_source(wildcards)}


def dataset_rows(wildcards):
    """One entry per (video, method, mode): its metrics (if any), prediction and stage benchmarks."""
    ds = wildcards.dataset
    has_gt = DATASETS[ds]["kind"] in GT_KINDS
    names = manifest(ds).get("names", {})
    rows = []
    for video in videos_of(ds):
        for method in config["methods"]:
            for mode in modes_of(ds):
                rows.append(
                    {
                        "video": video,
                        "name": names.get(video, video),
                        "method": method,
                        "mode": mode,
                        "prediction": fill(track_rule(method).output[0], dataset=ds, video=video, mode=mode),
                        "metrics": (
                            fill(rules.evaluate.output[0], dataset=ds, method=method, video=video, mode=mode)
                            if has_gt
                            else None
                        ),
                        "benchmarks": stage_benchmarks(ds, video, method, mode),
                    }
                )
    return rows


def dataset_summary_input(wildcards):
    files = []
    for row in dataset_rows(wildcards):
        files.append(row["prediction"])
        if row["metrics"]:
            files.append(row["metrics"])
        files.extend(row["benchmarks"].values())
    return files


def video_labels(wildcards):
    """Report labels of a track video: its original name beside the id when they differ (``clip.v2 (clip_v2)``)."""
    try:
        with open(manifest_path(wildcards.dataset)) as f:
            name = json.load(f).get("names", {}).get(wildcards.video, wildcards.video)
    except (OSError, ValueError):
        name = wildcards.video
    video = wildcards.video if name == wildcards.video else f"{name} ({wildcards.video})"
    return {"video": video, "method": wildcards.method, "query mode": wildcards.mode}


def summary_datasets():
    """The datasets results/summary.csv gathers: those of this run, and every other configured dataset
    whose results/<dataset>/summary.csv an earlier run left (with run_datasets, or results/<dataset>/...
    targets). A dataset removed from the config is not gathered."""
    earlier = [
        d
        for d in sorted(config["datasets"])
        if d not in DATASETS and os.path.exists(fill(rules.summarise_dataset.output[0], dataset=d))
    ]
    return sorted(DATASETS) + earlier


def nvp_config(wildcards):
    """The nvp hyper-parameters of the fit: the preset's keys overridden by config `nvp`, on config
    `device`, without the keys only inference reads (changing those must not refit)."""
    return {"device": config["device"], **{k: v for k, v in config["nvp"].items() if k not in NVP_INFERENCE_KEYS}}


def nvp_inference(wildcards):
    """The keys only inference reads (e.g. occlusion_margin), resolved against the preset."""
    resolved = resolve_nvp(config["nvp"])
    return {k: resolved[k] for k in sorted(NVP_INFERENCE_KEYS)}


VISUALISE = config["visualise"]


def depth_video(wildcards):
    """The depth video shown beside a track video (only where nvp runs, the depth stage's only user)."""
    if "nvp" not in config["methods"]:
        return []
    return fill(rules.visualise_depth.output.preview, dataset=wildcards.dataset, video=wildcards.video)


def loss_csvs(wildcards):
    """The nvp loss histories of every video of {dataset}."""
    return [fill(rules.optimise.output.loss, dataset=wildcards.dataset, video=v) for v in videos_of(wildcards.dataset)]


def visualised_modes(dataset):
    wanted = VISUALISE["modes"]
    return [m for m in modes_of(dataset) if wanted is None or m in wanted]


def report_targets(wildcards):
    """Everything the report shows: the summary page, plots per benchmark dataset, and track videos of the
    first ``visualise.max_videos`` videos of every dataset (per method and visualised query mode), with the
    depth video of each such video where nvp runs."""
    targets = [rules.summary_page.output[0]]
    for ds in sorted(DATASETS):
        if DATASETS[ds]["kind"] in GT_KINDS:
            targets += [fill(rules.plots.output.aj, dataset=ds), fill(rules.plots.output.delta, dataset=ds)]
        if "nvp" in config["methods"]:
            targets.append(fill(rules.plot_loss.output[0], dataset=ds))
        for video in videos_of(ds)[: VISUALISE["max_videos"]]:
            if "nvp" in config["methods"]:
                targets.append(fill(rules.visualise_depth.output.mp4, dataset=ds, video=video))
            for method in config["methods"]:
                for mode in visualised_modes(ds):
                    targets.append(
                        fill(rules.visualise.output.viewer, dataset=ds, method=method, video=video, mode=mode)
                    )
    return targets
