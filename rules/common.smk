# Helpers shared by rules/*.smk: dataset manifests, input functions, per-stage params and resources.
# Cheap at parse time: nothing here imports torch or reads video data.
import json
from omnitrack.model.config import INFERENCE_KEYS as NVP_INFERENCE_KEYS
from omnitrack.model.config import resolve as resolve_nvp
from omnitrack.versions import STAGE_VERSIONS

def selected_datasets():
    """The datasets to run: `run_datasets` if set (a --configfile can narrow config.yaml's set), else all."""
    names = config.get("run_datasets") or sorted(config["datasets"])
    unknown = sorted(set(names) - set(config["datasets"]))
    if unknown:
        raise ValueError(f"run_datasets names {unknown}, which are not in datasets: {sorted(config['datasets'])}")
    return {name: config["datasets"][name] for name in names}


DATASETS = selected_datasets()
if "nvp" in config["methods"]:
    resolve_nvp(config["nvp"])  # unknown or invalid nvp keys fail before anything runs
if "motion_init_sep" in config["nvp"]:
    raise ValueError(
        "config: nvp.motion_init_sep has no effect in the workflow: the depth stage gives the fit its start "
        "(use `depth: {method: motion, motion: {sep: <value>}}` for the motion start, or depth.method: layers)"
    )
GT_KINDS = ("synthetic", "tapvid")


wildcard_constraints:
    dataset="|".join(sorted(DATASETS)),
    video=r"[^/.]+",
    method="chain|nvp",
    mode="first|strided|grid",
    purpose="filter|match",


def version(stage):
    return STAGE_VERSIONS[stage]


def manifest(dataset):
    """The dataset's manifest (written by the prepare_dataset checkpoint)."""
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


def feature_spec(purpose):
    """The features.<purpose> section; the raft method without weights takes the flow's RAFT checkpoint."""
    spec = dict(config["features"][purpose])
    if spec["method"] == "raft" and spec.get("weights") is None:
        spec["weights"] = config["flow"]["raft"]["weights"]
    return spec


def filter_features(wildcards):
    if config["features"]["filter"]["method"] == "none":
        return []
    return f"results/{wildcards.dataset}/features/{wildcards.video}.filter.npz"


DEPTH = config["depth"]
DEPTH_MODEL = DEPTH["method"] == "depth_anything_v2"  # the only method that runs a network (gpu=1)


def depth_params(wildcards):
    """The depth section, only the keys of the chosen method (changing another method's keys reruns nothing)."""
    method = DEPTH["method"]
    keys = {"layers": ["layers", "seed"], "motion": ["motion", "seed"], "none": [],
            "depth_anything_v2": ["weights", "encoder", "input_size", "batch_size", "max_ratio"]}[method]
    return {"method": method, **{k: DEPTH[k] for k in keys}}


def depth_input(wildcards):
    """Frames, plus the masks directory for the methods that read flows (layers, motion)."""
    files = {"frames": f"results/{wildcards.dataset}/frames/{wildcards.video}.npz"}
    if DEPTH["method"] in ("layers", "motion"):
        files["masks"] = f"results/{wildcards.dataset}/masks/{wildcards.video}"
    return files


def stage_benchmarks(dataset, video, method, mode):
    """Benchmark files of every stage that produced one video's prediction, by stage name."""
    b = f"benchmarks/{dataset}"
    files = {
        "frames": f"{b}/frames/{video}.tsv",
        "flow": f"{b}/flow/{video}.tsv",
        "masks": f"{b}/masks/{video}.tsv",
        "features": f"{b}/features/{video}.match.tsv",
        "matches": f"{b}/matches/{video}.tsv",
    }
    if config["features"]["filter"]["method"] != "none":
        files["features_filter"] = f"{b}/features/{video}.filter.tsv"
    if method == "nvp":
        files["depth"] = f"{b}/depth/{video}.tsv"
        files["optimise"] = f"{b}/optimise/{video}.tsv"
    files[f"track_{method}"] = f"{b}/track_{method}/{video}.{mode}.tsv"
    return files


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
        return f"results/{wildcards.dataset}/synthetic.pkl"
    return spec["path"]


def frames_input(wildcards):
    m = manifest(wildcards.dataset)
    source = m["sources"][wildcards.video]
    if m["kind"] == "videos":
        return {"manifest": f"results/{wildcards.dataset}/manifest.json", "video": source}
    return {"manifest": f"results/{wildcards.dataset}/manifest.json"}


def dataset_rows(wildcards):
    """One entry per (video, method, mode): its metrics (if any), prediction and stage benchmarks."""
    ds = wildcards.dataset
    has_gt = DATASETS[ds]["kind"] in GT_KINDS
    rows = []
    for video in videos_of(ds):
        for method in config["methods"]:
            for mode in modes_of(ds):
                rows.append(
                    {
                        "video": video,
                        "method": method,
                        "mode": mode,
                        "prediction": f"results/{ds}/predictions/{method}/{video}.{mode}.npz",
                        "metrics": f"results/{ds}/metrics/{method}/{video}.{mode}.json" if has_gt else None,
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
    return f"results/{wildcards.dataset}/visualise/depth/{wildcards.video}.webp"


def visualised_modes(dataset):
    wanted = VISUALISE["modes"]
    return [m for m in modes_of(dataset) if wanted is None or m in wanted]


def report_targets(wildcards):
    """Everything the report shows: the summary page, plots per benchmark dataset, and track videos of the
    first ``visualise.max_videos`` videos of every dataset (per method and visualised query mode), with the
    depth video of each such video where nvp runs."""
    targets = ["results/report/summary.html"]
    for ds in sorted(DATASETS):
        if DATASETS[ds]["kind"] in GT_KINDS:
            targets += [f"results/{ds}/plots/aj_per_video.png", f"results/{ds}/plots/delta_curves.png"]
        if "nvp" in config["methods"]:
            targets.append(f"results/{ds}/plots/nvp_loss.png")
        for video in videos_of(ds)[: VISUALISE["max_videos"]]:
            if "nvp" in config["methods"]:
                targets.append(f"results/{ds}/visualise/depth/{video}.mp4")
            for method in config["methods"]:
                for mode in visualised_modes(ds):
                    targets.append(f"results/{ds}/visualise/{method}/{video}.{mode}.html")
    return targets
