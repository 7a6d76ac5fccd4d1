"""Sanity checks and ROAD on the embedded EfficientNet-Lite models: docs/sanity.md.

Runs, on a few scikit-image photos, the model-randomisation checks of
:mod:`captum_igcam.evaluation.sanity` (cascading on Lite0, Lite1 and Lite2,
independent on Lite0) and the benchmark loop with ROAD beside deletion and
insertion (:func:`captum_igcam.evaluation.evaluate` with ``families=["road"]``), and
writes every number to a JSON file, each part as soon as it is done (a rerun
skips the parts already there). The figures go to ``docs/images/sanity_*.png``.
``--report`` rewrites the generated blocks of ``docs/sanity.md`` from the
JSON; ``tests/test_sanity.py`` checks that the committed page matches the
committed JSON.

    python benchmarks/studies/sanity_study.py \
        --out benchmarks/studies/sanity_study.json
    python benchmarks/studies/sanity_study.py \
        --report benchmarks/studies/sanity_study.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# benchmarks/lib: the results files every script writes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import numpy as np
import results_file
import torch
from doc_blocks import render

from captum_igcam.evaluation.road import ROAD_NOISE_STD, ROAD_PERCENTAGES

#: This script's name in the results files it writes.
SCRIPT = Path(__file__).name

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "sanity.md"
IMAGES = ROOT / "docs" / "images"
MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
METHODS = ("gradcam", "igcam", "layer-ig", "ig")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "camera")
#: The run behind docs/sanity.md, sized for a 2-core CPU.
DEFAULTS = {"images": 4, "steps": 4, "stages": 3, "curve_steps": 10}
MEASURES = ("spearman", "spearman_abs", "ssim", "hog")
RANKED = {  # metric -> higher is better
    "deletion_auc": False,
    "road_morf": False,
    "insertion_auc": True,
    "road_lerf": True,
}


def photos(names: tuple[str, ...]) -> list[np.ndarray]:
    """scikit-image photos as ``HxWx3`` uint8 (grey ones repeated, pairs: left)."""
    import skimage.data

    images = []
    for name in names:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image
        images.append(np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image)
    return images


def parts(models: tuple[str, ...], road_models: tuple[str, ...]) -> list[str]:
    """The study's parts in run order: the most informative first."""
    order = [f"{models[0]}/cascading", f"{models[0]}/road"]
    order += [f"{models[0]}/independent"]
    order += [f"{name}/cascading" for name in models[1:]]
    order += [f"{name}/road" for name in road_models if name != models[0]]
    return order


def run_part(part: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run one part (``model/cascading``, ``model/independent``, ``model/road``)."""
    from captum_igcam.app.models import load_model
    from captum_igcam.app.settings import MethodSettings
    from captum_igcam.evaluation import sanity

    name, kind = part.split("/")
    bundle = load_model(name)
    settings = MethodSettings(n_steps=config["steps"])
    images = photos(tuple(config["photos"]))
    started = time.perf_counter()
    if kind == "road":
        entry = _road(bundle, images, settings, config)
    else:
        stages = sanity.group_stages(
            sanity.default_stages(bundle.model), config["stages"]
        )
        result = sanity.model_randomisation(
            bundle, images, config["methods"], settings, kind, stages, seed=0
        )
        summary = sanity.summarize_sanity(result)
        entry = sanity.sanity_json(result, summary)
        entry["differences_vs_gradcam"] = {
            method: {
                measure: [
                    [d.mean, d.low, d.high]
                    for d in sanity.compare_sanity(result, method, "gradcam", measure)
                ]
                for measure in MEASURES
            }
            for method in config["methods"]
            if method != "gradcam"
        }
        figure = sanity.randomisation_figure(result, summary)
        short = name.replace("efficientnet-", "")
        figure.savefig(IMAGES / f"sanity_{short}_{kind}.png", dpi=110)
    entry["seconds"] = time.perf_counter() - started
    return entry


def _road(bundle: Any, images: list, settings: Any, config: dict) -> dict[str, Any]:
    from scipy.stats import kendalltau

    from captum_igcam import evaluation
    from captum_igcam.evaluation.datasets import Dataset, Sample

    dataset = Dataset(
        name="scikit-image photos",
        has_boxes=False,
        size=len(images),
        loader=lambda i: Sample(config["photos"][i], images[i]),
        notes=[],
    )
    result = evaluation.evaluate(
        bundle,
        dataset,
        config["methods"],
        settings,
        curve_steps=config["curve_steps"],
        batch_size=len(images),
        families=["road"],
    )
    summary = evaluation.summarize(result)
    entry: dict[str, Any] = {"methods": {}, "orders": {}, "agreement": {}}
    for method in config["methods"]:
        entry["methods"][method] = {
            metric: {
                "mean": summary[method][metric].mean,
                "ci95": [summary[method][metric].low, summary[method][metric].high],
                "values": result.records[method].values[metric],
            }
            for metric in RANKED
        }
        if method != "gradcam":
            entry["methods"][method]["difference_vs_gradcam"] = {
                metric: _triple(evaluation.compare(result, method, "gradcam", metric))
                for metric in RANKED
            }
    for metric, higher in RANKED.items():
        means = {m: entry["methods"][m][metric]["mean"] for m in config["methods"]}
        entry["orders"][metric] = sorted(means, key=means.get, reverse=higher)
    for plain, road in (("deletion_auc", "road_morf"), ("insertion_auc", "road_lerf")):
        first = [entry["methods"][m][plain]["mean"] for m in config["methods"]]
        second = [entry["methods"][m][road]["mean"] for m in config["methods"]]
        entry["agreement"][f"{plain}~{road}"] = float(kendalltau(first, second)[0])
    return entry


def _triple(estimate: Any) -> list[float]:
    return [estimate.mean, estimate.low, estimate.high]


def run_study(args: argparse.Namespace) -> None:
    config = {
        "photos": list(PHOTOS[: args.images]),
        "methods": list(METHODS),
        "steps": args.steps,
        "stages": args.stages,
        "curve_steps": args.curve_steps,
        "road_percentages": list(ROAD_PERCENTAGES),
        "baseline": "black",
        "torch_threads": torch.get_num_threads(),
    }
    out = results_file.claim(args.out, SCRIPT)
    data = results_file.read(out) or {}
    if data.get("config", config) != config:
        raise SystemExit(f"--out: {out} holds a study with another configuration")
    data["config"] = config
    data.setdefault("parts", {})
    for part in parts(tuple(args.models), tuple(args.road_models)):
        if part in data["parts"]:
            continue
        print(f"[sanity study] {part} ...", flush=True)
        entry = run_part(part, config)
        entry["load_average"] = list(os.getloadavg())
        data["parts"][part] = entry
        results_file.write(out, data, SCRIPT, indent=1)
        print(f"[sanity study] {part}: {entry['seconds']:.0f} s", flush=True)
    write_report(data)


def _cell(
    mean: float, low: float, high: float, signed: bool = False, digits: int = 2
) -> str:
    form = f"{'+' if signed else ''}.{digits}f"
    if low is None or np.isnan(low):
        return f"{mean:{form}}"
    return f"{mean:{form}} [{low:{form}}, {high:{form}}]"


def _short(stage: list[str]) -> str:
    return stage[0] if len(stage) == 1 else f"{stage[0]}..{stage[-1]}"


def sanity_block(entry: dict[str, Any]) -> str:
    """Markdown table of one sanity part: similarity per method and stage."""
    lines = [
        f"*{entry['model']}, layer `{entry['layer']}`, {entry['mode']} "
        f"randomisation, {entry['n_images']} photos.* Similarity to the trained "
        "model's map, mean [95% CI]; near 0 passes the check. *Constant*: "
        "photos whose randomised map is constant (all zero after Grad-CAM's "
        "ReLU), where the correlations are undefined and left out.",
        "",
        "| method | randomised | Spearman | Spearman abs | SSIM | HOG | constant |",
        "|---|---|---|---|---|---|---|",
    ]
    prefix = "up to " if entry["mode"] == "cascading" else ""
    for method, table in entry["methods"].items():
        for k, stage in enumerate(entry["stages"]):
            cells = [
                _cell(table[m]["mean"][k], *_none(table[m]["ci95"][k]))
                for m in MEASURES
            ]
            cells.append(str(table["spearman"]["values"][k].count(None)))
            label = f"{prefix}`{_short(stage)}`"
            lines.append(f"| {method} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _none(pair: list) -> tuple[float, float]:
    return tuple(float("nan") if v is None else v for v in pair)


def verdict_block(data: dict[str, Any]) -> str:
    """Per model: the similarity after full cascading randomisation, vs Grad-CAM."""
    lines = [
        "| model | method | Spearman abs, all randomised (constant maps) "
        "| HOG, all randomised | Spearman abs minus Grad-CAM's, after the "
        "logits only |",
        "|---|---|---|---|---|",
    ]
    for part, entry in data["parts"].items():
        if not part.endswith("/cascading"):
            continue
        for method, table in entry["methods"].items():
            last = [table[m]["mean"][-1] for m in ("spearman_abs", "hog")]
            ci = [_none(table[m]["ci95"][-1]) for m in ("spearman_abs", "hog")]
            difference = entry["differences_vs_gradcam"].get(method)
            first = (
                _cell(*difference["spearman_abs"][0], signed=True)
                if difference
                else "(reference)"
            )
            constant = table["spearman"]["values"][-1].count(None)
            lines.append(
                f"| {entry['model']} | {method} | {_cell(last[0], *ci[0])} "
                f"({constant} of {entry['n_images']}) "
                f"| {_cell(last[1], *ci[1])} | {first} |"
            )
    return "\n".join(lines)


def road_block(data: dict[str, Any]) -> str:
    """ROAD against deletion and insertion: means, orders, rank agreement."""
    lines = []
    for part, entry in data["parts"].items():
        if not part.endswith("/road"):
            continue
        lines += [
            f"*{part.split('/')[0]}*, mean [95% CI] over the photos:",
            "",
            "| method | deletion AUC ↓ | ROAD MoRF ↓ | insertion AUC ↑ | ROAD LeRF ↑ |",
            "|---|---|---|---|---|",
        ]
        for method, row in entry["methods"].items():
            cells = [
                _cell(row[m]["mean"], *_none(row[m]["ci95"]), digits=3) for m in RANKED
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Paired difference against Grad-CAM on the same photos, mean [95% CI]:",
            "",
            "| method | deletion AUC | ROAD MoRF | insertion AUC | ROAD LeRF |",
            "|---|---|---|---|---|",
        ]
        for method, row in entry["methods"].items():
            if "difference_vs_gradcam" in row:
                cells = [
                    _cell(*row["difference_vs_gradcam"][m], signed=True) for m in RANKED
                ]
                lines.append(f"| {method} - gradcam | " + " | ".join(cells) + " |")
        lines += ["", "Order of the methods, best first:", ""]
        for metric, order in entry["orders"].items():
            lines.append(f"- {metric}: {', '.join(order)}")
        lines += [
            "",
            "Kendall's tau between the method means: deletion vs ROAD MoRF "
            f"{entry['agreement']['deletion_auc~road_morf']:+.2f}, insertion vs "
            f"ROAD LeRF {entry['agreement']['insertion_auc~road_lerf']:+.2f}.",
            "",
        ]
    return "\n".join(lines).rstrip()


def config_block(data: dict[str, Any]) -> str:
    config = data["config"]
    seconds = {part: entry["seconds"] for part, entry in data["parts"].items()}
    loads = [entry["load_average"][0] for entry in data["parts"].values()]
    return "\n".join(
        [
            f"- Photos ({len(config['photos'])}, scikit-image): "
            + ", ".join(f"`{p}`" for p in config["photos"]),
            f"- Methods: {', '.join(config['methods'])}; {config['steps']} "
            f"Gauss-Legendre steps, {config['baseline']} baseline, default layer "
            "`_head_activation`; the explained class is the trained model's "
            "prediction.",
            f"- Cascade: {config['stages']} stages (the logits, then the "
            "remaining units split into equal groups, output first; see the tables).",
            f"- Deletion/insertion: {config['curve_steps']} steps; ROAD: removal "
            f"of {', '.join(str(p) for p in config['road_percentages'])} % of the "
            f"pixels, noise {ROAD_NOISE_STD}.",
            f"- Run time on a shared 2-core CPU ({config['torch_threads']} "
            f"torch threads, 1-minute load average {min(loads):.1f} to "
            f"{max(loads):.1f}): "
            + ", ".join(f"{p} {s:.0f} s" for p, s in seconds.items())
            + f"; {sum(seconds.values()) / 60:.0f} minutes in all.",
        ]
    )


def blocks(data: dict[str, Any]) -> dict[str, str]:
    """Every generated block of docs/sanity.md, by name."""
    generated = {
        "config": config_block(data),
        "verdict": verdict_block(data),
        "road": road_block(data),
    }
    for part, entry in data["parts"].items():
        if not part.endswith("/road"):
            generated[part.replace("efficientnet-", "").replace("/", "-")] = (
                sanity_block(entry)
            )
    return generated


def write_report(data: dict[str, Any]) -> None:
    DOC.write_text(render(DOC.read_text(), blocks(data)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/studies/sanity_study.json")
    parser.add_argument("--report", metavar="JSON", help="only rewrite docs/sanity.md")
    for option, default in DEFAULTS.items():
        parser.add_argument(f"--{option.replace('_', '-')}", type=int, default=default)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--road-models", nargs="+", default=list(MODELS[:1]))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.report:
        write_report(json.loads(Path(args.report).read_text()))
        return
    torch.set_num_threads(args.threads)
    run_study(args)


if __name__ == "__main__":
    main()
