# ruff: noqa: E501 - the page template has Markdown table rows
"""Write ``docs/peers.md`` from the peer study's committed results.

Usage::

    python benchmarks/studies/make_peers_doc.py          # writes docs/peers.md
    python benchmarks/studies/make_peers_doc.py --check  # exit 1 if it is stale

Every number on the page comes from ``benchmarks/studies/peers_*.json``
(written by ``peer_study.py``); ``tests/test_peers_doc.py`` checks that the
page is this script's output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DOC = ROOT / "docs" / "peers.md"
#: Results file -> what its layer is, for the headings.
RUNS = {
    "peers_head.json": "the default layer, where the gradient is constant",
    "peers_middle.json": "a middle block, where the gradient varies",
    "peers_perturbation.json": "Score-CAM and Ablation-CAM at the middle block",
}
#: Metric -> (column title, higher is better, digits).
METRICS = {
    "pointing_game": ("pointing game", True, 3),
    "ebpg": ("EBPG", True, 3),
    "auroc": ("pixel AUROC", True, 3),
    "avg_drop": ("Avg Drop %", False, 1),
    "insertion_auc": ("insertion AUC", True, 3),
    "deletion_auc": ("deletion AUC", False, 3),
}
#: The sanity check's verdict: mean Spearman rank correlation with the
#: trained model's map, after every stage is randomised, below this.
SANITY_PASS = 0.2


def _load() -> dict[str, dict]:
    runs = {}
    for name in RUNS:
        path = HERE / name
        if path.exists():
            runs[name] = json.loads(path.read_text(encoding="utf-8"))
    return runs


def _number(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:{'+' if signed else ''}.{digits}f}"


def _interval(mean, low, high, digits: int, signed: bool = False) -> str:
    if low is None or high is None:
        return _number(mean, digits, signed)
    return (
        f"{_number(mean, digits, signed)} "
        f"[{_number(low, digits, signed)}, {_number(high, digits, signed)}]"
    )


def _absolute_table(run: dict) -> list[str]:
    methods = run["benchmark"]["methods"]
    memory = run["peak_memory_mb"]
    header = [METRICS[m][0] + (" ↑" if METRICS[m][1] else " ↓") for m in METRICS]
    lines = [
        "| method | " + " | ".join(header) + " | s / image | peak MiB |",
        "|---|" + "---|" * (len(METRICS) + 2),
    ]
    for name, entry in methods.items():
        cells = [
            _interval(entry.get(m), *entry["ci95"].get(m, [None, None]), METRICS[m][2])
            for m in METRICS
        ]
        cells.append(_number(entry.get("seconds_per_image"), 2))
        cells.append(_number(memory.get(name), 0))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _difference_table(run: dict) -> list[str]:
    methods = run["benchmark"]["methods"]
    lines = [
        "| method - gradcam | " + " | ".join(METRICS[m][0] for m in METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for name, entry in methods.items():
        difference = entry.get("difference_vs_gradcam")
        if not difference:
            continue
        cells = []
        for metric, (_, _, digits) in METRICS.items():
            value = difference.get(metric, {"mean": None, "ci95": [None, None]})
            cell = _interval(value["mean"], *value["ci95"], digits, signed=True)
            verdict = _verdict(metric, value)
            cells.append(f"**{cell}**" if verdict else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _verdict(metric: str, value: dict) -> str | None:
    """``"better"``/``"worse"`` than Grad-CAM when the interval excludes 0."""
    low, high = value["ci95"]
    if low is None or high is None or low <= 0 <= high:
        return None
    higher = low > 0
    return "better" if higher == METRICS[metric][1] else "worse"


def _findings(run: dict) -> list[str]:
    lines = []
    for name, entry in run["benchmark"]["methods"].items():
        difference = entry.get("difference_vs_gradcam")
        if not difference:
            continue
        better, worse = [], []
        for metric in METRICS:
            if metric in difference:
                verdict = _verdict(metric, difference[metric])
                title = METRICS[metric][0]
                (better if verdict == "better" else worse if verdict else []).append(
                    title
                )
        if better or worse:
            parts = []
            if better:
                parts.append("better on " + ", ".join(better))
            if worse:
                parts.append("worse on " + ", ".join(worse))
            lines.append(f"- `{name}`: {'; '.join(parts)}.")
        else:
            lines.append(f"- `{name}`: no difference whose interval excludes 0.")
    return lines


def _sanity_table(run: dict) -> list[str]:
    sanity = run["benchmark"].get("sanity", {}).get("cascading")
    if not sanity:
        return []
    stages = sanity["stages"]
    titles = [
        f"{stage[0]} randomised" if index == 0 else "all randomised"
        for index, stage in enumerate(stages)
    ]
    lines = [
        "| method | "
        + " | ".join(f"Spearman, {t}" for t in titles)
        + " | passes ("
        + ", ".join(titles)
        + ") |",
        "|---|" + "---|" * (len(stages) + 1),
    ]
    for name, values in sanity["methods"].items():
        spearman = values["spearman"]
        cells = [
            _interval(mean, *(interval or [None, None]), 2)
            for mean, interval in zip(spearman["mean"], spearman["ci95"], strict=True)
        ]
        verdicts = [
            "n/a" if mean is None else ("yes" if abs(mean) < SANITY_PASS else "no")
            for mean in spearman["mean"]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {', '.join(verdicts)} |")
    return lines


def _cost(run: dict) -> list[str]:
    """Each method's time and peak memory as multiples of Grad-CAM's."""
    methods = run["benchmark"]["methods"]
    memory = run["peak_memory_mb"]
    reference = methods.get("gradcam", {}).get("seconds_per_image")
    if not reference:
        return []
    parts = []
    for name, entry in methods.items():
        if name == "gradcam":
            continue
        ratio = entry["seconds_per_image"] / reference
        parts.append(f"`{name}` {ratio:.1f}x")
    return [
        "Time per image as a multiple of Grad-CAM's in the same run: "
        + ", ".join(parts)
        + f". Peak memory of one map: Grad-CAM {memory['gradcam']:.0f} MiB; the "
        "library's gradient methods call `backward()` on the whole model "
        "(parameter gradients included) where Captum differentiates the layer "
        "only.",
    ]


def _run_section(name: str, run: dict) -> list[str]:
    benchmark = run["benchmark"]
    settings = benchmark["settings"]
    top1 = benchmark.get("top1_accuracy") or {}
    load = run["load_average"]
    lines = [
        f"### `{run['layer']}`: {RUNS[name]}",
        "",
        f"{benchmark['n_images']} composites (seed 0), {settings['n_steps']} "
        f"integration steps ({settings['method']}, {settings['baseline']} "
        f"baseline), {settings['curve_steps']} deletion/insertion steps; model "
        f"top-1 accuracy on these images "
        f"{_interval(top1.get('mean'), *top1.get('ci95', [None, None]), 2)}. "
        f"File: [`benchmarks/studies/{name}`](../benchmarks/studies/{name}). "
        f"Run on {run['cpu_count']} shared CPU cores, {run['torch_threads']} "
        f"torch thread (load average {load['before'][0]:.1f} before, "
        f"{load['after'][0]:.1f} after; {run['wall_seconds'] / 60:.0f} minutes): "
        "the times are this machine's under that load, comparable between the "
        "methods of one run only.",
        "",
        "Mean [95 % CI]:",
        "",
        *_absolute_table(run),
        "",
        "Paired difference against Grad-CAM on the same images, mean [95 % CI]; "
        "bold where the interval excludes 0:",
        "",
        *_difference_table(run),
        "",
        "Differences whose interval excludes 0:",
        "",
        *_findings(run),
        "",
        *_cost(run),
    ]
    sanity = _sanity_table(run)
    if sanity:
        lines += [
            "",
            "Cascading model randomisation (`--sanity cascading --sanity-stages "
            f"2`): Spearman rank correlation of each map with the trained "
            f"model's, mean [95 % CI]; a method passes a stage when the mean "
            f"falls below {SANITY_PASS} in absolute value there:",
            "",
            *sanity,
        ]
    return lines


def _versions(runs: dict[str, dict]) -> str:
    versions = next(iter(runs.values()))["versions"]
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def _images(runs: dict[str, dict], name: str) -> str:
    return str(runs[name]["benchmark"]["n_images"]) if name in runs else "n/a"


def render() -> str:
    """The page, from the committed results."""
    runs = _load()
    sections: list[str] = []
    for name, run in runs.items():
        sections += ["", *_run_section(name, run)]
    body = TEMPLATE.format(
        versions=_versions(runs) if runs else "n/a",
        commands="\n".join(
            f"captum-igcam {run['command'].removeprefix('captum-igcam ')}"
            for run in runs.values()
        ),
        results="\n".join(sections).lstrip("\n"),
        sanity_pass=SANITY_PASS,
        n_main=_images(runs, "peers_head.json"),
        n_perturbation=_images(runs, "peers_perturbation.json"),
    )
    return body


TEMPLATE = """\
<!-- Generated by benchmarks/studies/make_peers_doc.py from
benchmarks/studies/peers_*.json: edit the script, not this page. -->
# Which CAM? Integrated Grad-CAM beside the methods users pick instead

Most users who want a class activation map reach for pytorch-grad-cam (the
`grad-cam` package). With the `peers` extra, its methods join the method
registry and run in `captum-igcam explain` and `captum-igcam benchmark`
beside Grad-CAM and Integrated Grad-CAM, at the same layer, on the same
inputs, for the same targets, scored by the same metrics:

```bash
pip install -e ".[peers]"     # pytorch-grad-cam 1.5.x
captum-igcam benchmark --methods gradcam,igcam,gradcam++,xgradcam,layercam,hirescam,scorecam,ablationcam,eigencam
captum-igcam explain photo.jpg --methods gradcam,igcam,gradcam++,layercam,scorecam
```

Without the extra, a peer name in `--methods` stops the command before any
image is explained, with the `pip install` line to run.

## The registered methods

| name | pytorch-grad-cam class | what it weights |
|---|---|---|
| `pgc-gradcam` | `GradCAM` | the library's Grad-CAM: the same map as `gradcam` (tested) |
| `gradcam++` | `GradCAMPlusPlus` | positive gradients with second-order pixel weights |
| `xgradcam` | `XGradCAM` | gradients averaged with the activations as weights |
| `layercam` | `LayerCAM` | positive gradient times activation, per position |
| `hirescam` | `HiResCAM` | gradient times activation, per position |
| `gradcam-elementwise` | `GradCAMElementWise` | ReLU of gradient times activation, per position |
| `shapleycam` | `ShapleyCAM` | gradient and a Hessian-vector product |
| `scorecam` | `ScoreCAM` | softmax of the scores of the image masked by each channel (no gradient) |
| `ablationcam` | `AblationCAM` | score drop when a channel is zeroed (no gradient) |
| `eigencam` | `EigenCAM` | first principal component of the activations (not class-specific) |
| `eigengradcam` | `EigenGradCAM` | first principal component of gradient times activation |
| `kpcacam` | `KPCA_CAM` | first kernel principal component of the activations (not class-specific) |
| `fem` | `FEM` | activations above mean + 2 std (not class-specific) |

Not registered: `FullGrad` (every bias layer at once, not one layer),
`FinerCAM` (explains the difference to similar classes, not the target's
score), `RefineCAM` (several layers), `SESS` (sliding windows over the
image), `RandomCAM` (a random control drawn from NumPy's global
generator), `SegEigenCAM` (EigenCAM with a sign rule).

torchcam (0.5.0 on PyPI) has methods pytorch-grad-cam lacks (SS-CAM,
IS-CAM, Smooth Grad-CAM++ and, for transformers, LeGrad); it is not wired
in yet, so those methods are not compared here.

**The adapter** (`captum_igcam.app.peer_methods`) calls the library's own
classes with the registry's layer and, for a class target, the library's
`ClassifierOutputTarget`; for a forward function that returns one score per
example (a detection score), the score itself. Score-CAM and Ablation-CAM
score the perturbed copies of one image at a time in passes of as many
images as fit `--memory-budget` (the budget's deletion-curve rows). The
library sets the model to `eval()`, registers hooks, fills the parameters'
`.grad` with `backward()` and (Ablation-CAM) swaps the layer for its
ablation layer: every call puts back the training flags, hooks, gradients
and modules it found, also when the call fails (tested). Exact versions in
the results below: {versions}.

## What a peer map is, and what the metrics make of it

The library's public output is, per example, the layer map after a ReLU,
min-max scaled to [0, 1], resized to the input with OpenCV, then min-max
scaled again. The adapter takes the map before that scaling and resizing:
the output of the class's `get_cam_image` at the layer's resolution, with
the library's ReLU, in the layer's units, `(N, 1, h, w)` like `gradcam`'s.
`tests/test_peers.py` checks that pytorch-grad-cam's Grad-CAM map equals
Captum's `LayerGradCam` (float64, to 1e-9) and that the library's public
output is that map scaled and resized as described. Had the scaled output
been used instead, per metric:

| metric | what the library's scaling would change |
|---|---|
| pointing game | nothing from the min-max scaling (the peak stays the peak); its resize to the input, not to the photo, could move the peak by a pixel or two against a 15 px tolerance |
| EBPG | the share of positive energy moves when the map's minimum is above 0 (min-max subtracts it); for the ReLU'd maps the minimum is usually 0, so it rarely matters |
| pixel AUROC | nothing: a rank statistic |
| Average Drop, Increase | nothing: the benchmark min-max scales every map before masking |
| deletion, insertion | nothing: they use the pixels' order |
| sanity similarities | nothing: Spearman is a rank statistic, SSIM and HOG use min-max scaled maps |

Every method is thus scored on its own layer map, upsampled by the
benchmark in one way for all.

## Where the methods can differ at all

At a layer followed only by global average pooling and a linear layer
(EfficientNet-Lite0's default `_head_activation`, ResNet's `layer4`), the
gradient of the class score `S_c` is `dS_c/dA_kij = W_ck / (h w)`: the same
at every position, and the same for every input, every point of an
integration path included. There, with `CAM_c = sum_k W_ck A_k` (Zhou et
al.) and `m_k` the channel's spatial mean:

- **Grad-CAM, XGrad-CAM and HiResCAM give one map**, `ReLU(CAM_c) / (h w)`
  (XGrad-CAM up to the library's 1e-7 in a denominator);
- **LayerCAM** is `ReLU(sum_k max(W_ck, 0) A_k) / (h w)`: CAM over the
  positively weighted channels;
- **Grad-CAM++** is CAM over the same channels with weights
  `W_ck / (2 + W_ck m_k)` instead of `W_ck` (its pixel weights are constant,
  but not its channel weights; up to the library's 1e-6 beside `2 g^2`);
- **Integrated Grad-CAM** is `sum_m s_m ReLU(CAM_c(x_m)) / (h w)` (minus
  `CAM_c(x')` inside the ReLU with `subtract_baseline_activations=True`):
  the average of ReLU'd CAM maps along the path. Its gradient part has
  nothing to integrate; what it adds to Grad-CAM there is the average of
  the activations' CAM over the path.

`tests/test_peers.py` checks each equality on a network with such a head
in float64, to a relative 1e-9 (1e-5 where the library's epsilons enter),
and that they fail one layer earlier, before the last ReLU.
`captum_igcam.app.layer_gradient.gradient_is_constant_over_positions` tells
from one backward pass whether a layer is such a layer (true at Lite0's
`_head_activation`, false at `_blocks.10`; tested).

The comparison that can tell the methods apart is therefore the one at a
layer where the gradient varies: below, Lite0's middle block `_blocks.10`
(14 x 14, before the last stride), beside the default layer.

## The study

```bash
{commands}
```

`benchmarks/studies/peer_study.py` runs each command in one process and
stores its JSON result with the libraries' versions, the machine's load
and each method's peak memory: the growth of the resident set during one
map of the first composite, each method in a fresh process (the time per
image is the benchmark's own, measured around the same call). This is a
light configuration for a shared 2-core CPU: {n_main} composites, 8 integration
steps instead of 50 (8 to 32 steps changed EBPG and pixel AUROC by at most
0.004 in [variants.md](variants.md)), 5
deletion/insertion steps (the laptop configuration of
[evaluation.md](evaluation.md)), and model randomisation in two stages
(the logits, then everything). Score-CAM and Ablation-CAM score one
perturbed image per channel and map: 1280 channels at `_head_activation`
were beyond this machine, so they ran at `_blocks.10` (112 channels) on
{n_perturbation} composites, in a run of their own.

{results}

## What the tables can and cannot say

- **Composites overstate differences.** These are objects pasted on
  textures, with sharp borders. On them Integrated Grad-CAM beat Grad-CAM
  at the default layer in the variant study, and on real ImageNet photos it
  tied ([variants.md](variants.md#what-transfers-to-real-photos)). A
  difference here is a reason to run the comparison on real photos, not a
  result about them.
- **At `_head_activation` the gradient methods cannot differ much**: three
  of them are one map by construction (above), so their rows differ only by
  rounding, and Integrated Grad-CAM differs from Grad-CAM only through the
  path average of CAM. The middle block is where the gradient-based
  weighting schemes are actually compared.
- **Small samples.** With {n_main} images ({n_perturbation} for Score-CAM and Ablation-CAM) the
  intervals are wide, and a difference whose interval includes 0 is not
  evidence of a tie. The command below on 1000 real photos is the test.
- **Class-agnostic methods** (EigenCAM, KPCA-CAM, FEM) explain the
  activations, not the class: they cannot pass the logit stage of the
  sanity check by construction, and their localisation scores on
  single-object images say little about class evidence.
- **Cost** is this machine's, under the load shown; the ratios between
  methods of one run are what carries over.

## On your own data

On your copy of the ILSVRC2012 validation set with its CLS-LOC boxes
(layouts in [evaluation.md](evaluation.md)):

```bash
pip install -e ".[peers]"
captum-igcam benchmark --dataset imagenet-loc:/data/ILSVRC2012 --n 1000 \\
    --methods gradcam,igcam,gradcam++,xgradcam,layercam,hirescam,eigencam,scorecam,ablationcam \\
    --layer _blocks.10 --steps 50 --sanity cascading --sanity-stages 2 \\
    --json imagenet_peers.json
```

and at the default layer without `--layer`. On PASCAL VOC with a model of
your own, the VOC command of [evaluation.md](evaluation.md) with the same
`--methods`. Score-CAM and Ablation-CAM cost one forward pass per channel
and map (1280 at `_head_activation`): on a CPU, run them on fewer images.

## Segmentation and detection

The peer methods explain the same bound forward functions as ours
(`captum_igcam.targets`): for a segmentation model, a class's mean logit
over a region; for a detector, the score of a matched detection
(`tests/test_peers_cli.py` runs `explain` with Grad-CAM++, LayerCAM,
Score-CAM and Ablation-CAM on a small segmentation model and a small
Faster R-CNN). pytorch-grad-cam's own `SemanticSegmentationTarget` and
`FasterRCNNBoxScoreTarget` are not used: they score the raw output, which
our targets already reduce to one score. In pytorch-grad-cam,
Ablation-CAM's ablation layer handles 4-D feature maps only (its
`AblationLayerVit` is not wired in) and ShapleyCAM does not apply a reshape
transform to the activations it keeps: at a transformer's token layer
`ablationcam` and `shapleycam` stop with an error naming `--methods`; the
other methods take the model's `reshape_transform`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is stale: run {Path(__file__).name}", file=sys.stderr)
            raise SystemExit(1)
        return
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
