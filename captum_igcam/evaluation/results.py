"""The benchmark's result file: writing it, reading it back, formatting it.

``captum-igcam benchmark --json FILE`` writes, and ``captum-igcam report
FILE`` and the scripts in ``benchmarks/`` read, one JSON object whose format
this module owns (:data:`FORMAT_VERSION`; ``docs/results.md`` describes every
field):

- :func:`result_json` builds it from an
  :class:`~captum_igcam.evaluation.runner.EvaluationResult` and its
  summaries; :func:`write_result` writes it as strict JSON (a number that is
  not finite is written ``null``), as a new file only;
  :func:`check_output_path` checks the destination before any work;
- :func:`read_result` reads a file back and checks its shape once, at the
  boundary: anything else (another shape, a deeply nested or non-UTF-8
  file) raises :class:`ResultFileError`, naming the file and the field;
- :func:`format_interval` formats ``mean [low, high]`` for every table.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import math
import os
import platform
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Version of the format :func:`result_json` writes. A file without
#: ``format_version`` is version 1 (no ``versions``, ``cost``,
#: ``image_sha256`` nor ``examples``).
FORMAT_VERSION = 2
#: The method all others are compared with, when it ran.
REFERENCE_METHOD = "gradcam"
#: Most images whose maps the result keeps (where the methods differ most).
MAX_EXAMPLES = 6
#: Distributions whose exact version every result records (those installed).
RECORDED_DISTRIBUTIONS = (
    "captum-igcam",
    "torch",
    "torchvision",
    "captum",
    "numpy",
    "grad-cam",
    "torchcam",
    "quantus",
)

Number = float | None
#: The first bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ResultFileError(ValueError):
    """A benchmark result file that cannot be read or has the wrong shape.

    Args:
        path (str or os.PathLike): The file.
        field (str): Dotted path of the field at fault (``""``: the file).
        problem (str): What was expected and found.

    Example::

        >>> str(ResultFileError("b.json", "methods.igcam.ci95", "expected ..."))
        "b.json: methods.igcam.ci95: expected ..."
    """

    def __init__(self, path: str | os.PathLike[str], field: str, problem: str):
        self.path = os.fspath(path)
        self.field = field
        super().__init__(f"{self.path}: {field + ': ' if field else ''}{problem}")


def format_interval(
    mean: Number, low: Number, high: Number, spec: str = ".3f", signed: bool = False
) -> str:
    """``mean [low, high]``; the mean alone without an interval; ``n/a`` without it.

    Args:
        mean (float or None): The estimate.
        low (float or None): Lower end of its interval.
        high (float or None): Upper end of its interval.
        spec (str, optional): Format of each number, e.g. ``".1f"``, ``".3g"``.
            Default: ".3f"
        signed (bool, optional): Write ``+`` before positive numbers.
            Default: False

    Returns:
        str: The text.

    Example::

        >>> format_interval(0.25, -0.125, 0.625)
        '0.250 [-0.125, 0.625]'
    """
    spec = ("+" if signed else "") + spec
    if not _finite(mean):
        return "n/a"
    if not (_finite(low) and _finite(high)):
        return f"{mean:{spec}}"
    return f"{mean:{spec}} [{low:{spec}}, {high:{spec}}]"


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def library_versions() -> dict[str, str]:
    """Python's version and that of each installed distribution of
    :data:`RECORDED_DISTRIBUTIONS` (torch, Captum, the methods' libraries).

    Returns:
        dict[str, str]: Name -> exact version, e.g. ``{"torch": "2.5.1", ...}``.
    """
    versions = {"python": platform.python_version()}
    for name in RECORDED_DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def check_output_path(path: str | os.PathLike[str], option: str = "--json") -> None:
    """Check, before any work, that a new result file can be made at ``path``.

    Args:
        path (str or os.PathLike): The destination.
        option (str, optional): The name errors give it.
            Default: "--json"

    Raises:
        ValueError: If the name exists (in any form), or its folder is
            missing, not a folder or not writable.
    """
    destination = Path(path)
    folder = destination.parent
    if os.path.lexists(destination):
        raise ValueError(
            f"{option}: {os.fspath(path)!r} exists; the benchmark writes only new files"
        )
    if not folder.is_dir():
        raise ValueError(
            f"{option}: the folder {os.fspath(folder)!r} of {os.fspath(path)!r} "
            "does not exist; create it first"
        )
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(
            f"{option}: cannot create files in {os.fspath(folder)!r} ({error.strerror})"
        ) from None


def strict(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by ``None``.

    Tuples become lists and numpy numbers and arrays Python ones, so that
    the result is plain, strict JSON.
    """
    if isinstance(value, Mapping):
        return {str(key): strict(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return strict(value.tolist())
    if isinstance(value, (list, tuple)):
        return [strict(item) for item in value]
    if isinstance(value, np.generic):
        return strict(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_result(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write a result as a new strict-JSON file (non-finite numbers as ``null``).

    Args:
        path (str or os.PathLike): The destination; it must not exist.
        data (Mapping): From :func:`result_json`.

    Raises:
        OSError: If the file cannot be created (it exists, the disk is full).
    """
    from captum_igcam.app.safe_files import atomic_write_bytes

    text = json.dumps(strict(data), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def result_json(
    result: Any,
    summary: Mapping[str, Mapping[str, Any]],
    differences: Mapping[str, Mapping[str, Any]],
    accuracy: Any | None,
    sanity: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The benchmark's result as JSON-ready data (:data:`FORMAT_VERSION`).

    Args:
        result (EvaluationResult): From
            :func:`~captum_igcam.evaluation.runner.evaluate`.
        summary (Mapping): From :func:`~captum_igcam.evaluation.runner.summarize`.
        differences (Mapping): Method -> metric -> paired difference
            :class:`~captum_igcam.evaluation.statistics.Estimate` against
            :data:`REFERENCE_METHOD`.
        accuracy (Estimate or None): The model's top-1 accuracy.
        sanity (Mapping, optional): Mode -> sanity-check JSON
            (:func:`~captum_igcam.evaluation.sanity.sanity_json`).
            Default: None

    Returns:
        dict: The data :func:`write_result` writes (may hold non-finite
        floats, which it writes as ``null``).
    """
    methods = {}
    for name, row in summary.items():
        record = result.records[name]
        entry: dict[str, Any] = {metric: value.mean for metric, value in row.items()}
        entry["ci95"] = {metric: _pair(value) for metric, value in row.items()}
        entry["cost"] = {
            "seconds_per_image": row["seconds_per_image"].mean,
            "peak_memory_mb": record.peak_memory_mb,
        }
        if name in differences:
            entry[f"difference_vs_{REFERENCE_METHOD}"] = {
                metric: {"mean": value.mean, "ci95": _pair(value)}
                for metric, value in differences[name].items()
            }
        methods[name] = entry
    data = {
        "format_version": FORMAT_VERSION,
        "versions": library_versions(),
        "dataset": result.dataset,
        "model": result.model,
        "layer": result.layer,
        "n_images": result.n_images,
        "settings": result.settings,
        "notes": result.notes,
        "skipped": result.skipped,
        "top1_accuracy": None
        if accuracy is None
        else {"mean": accuracy.mean, "ci95": _pair(accuracy)},
        "methods": methods,
        "images": result.image_names,
        "image_sha256": result.image_sha256,
        "objects": result.objects,
        "values": {
            name: dict(record.values) for name, record in result.records.items()
        },
        "curves": {
            name: {
                mode: np.mean(np.asarray(curves, np.float64), axis=0)
                for mode, curves in record.curves.items()
            }
            for name, record in result.records.items()
        },
        "examples": _examples(result),
    }
    if sanity:
        data["sanity"] = dict(sanity)
    return data


def _pair(value: Any) -> list[float]:
    return [value.low, value.high]


def most_different_images(
    values: Mapping[str, Mapping[str, Sequence[Number]]],
    n_images: int,
    limit: int = MAX_EXAMPLES,
) -> list[int]:
    """The images on which the methods' per-image values spread most.

    For each per-image metric (one value per image), images are ranked by the
    spread (largest minus smallest value over the methods); the rankings are
    merged in turn (the first of each metric, then the second, ...).

    Args:
        values (Mapping): Method -> metric -> per-image values (``None`` or
            NaN where undefined), as in a result's ``values``.
        n_images (int): Number of images.
        limit (int, optional): Most images returned.
            Default: :data:`MAX_EXAMPLES`

    Returns:
        list[int]: Image indices, most different first.
    """
    rankings = []
    for metric, matrix in _per_image_matrices(values, n_images).items():
        if metric == "seconds_per_image" or len(matrix) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
            spread = np.nanmax(matrix, axis=0) - np.nanmin(matrix, axis=0)
        order = np.argsort(-np.nan_to_num(spread, nan=-1.0), kind="stable")
        rankings.append([int(i) for i in order if np.isfinite(spread[i])])
    chosen: list[int] = []
    for position in range(n_images):
        for ranking in rankings:
            if position < len(ranking) and ranking[position] not in chosen:
                chosen.append(ranking[position])
    return chosen[:limit]


def _per_image_matrices(
    values: Mapping[str, Mapping[str, Sequence[Number]]], n_images: int
) -> dict[str, np.ndarray]:
    """Metric -> ``(methods, n_images)`` array, for metrics with one value per image."""
    columns: dict[str, list[list[float]]] = {}
    for table in values.values():
        for metric, column in table.items():
            if len(column) == n_images:
                numbers = [math.nan if v is None else float(v) for v in column]
                columns.setdefault(metric, []).append(numbers)
    return {metric: np.array(rows) for metric, rows in columns.items()}


def _examples(result: Any) -> list[dict[str, Any]]:
    """The maps and thumbnails of the images where the methods differ most."""
    from captum_igcam.evaluation.runner import all_metrics

    per_object = {metric.name for metric in all_metrics() if metric.per_object}
    values = {
        name: {m: v for m, v in record.values.items() if m not in per_object}
        for name, record in result.records.items()
    }
    chosen = most_different_images(values, len(result.image_names))
    return [
        {
            "image": index,
            "thumbnail_png": result.thumbnails[index],
            "maps": {
                name: np.round(record.small_maps[index].astype(np.float64), 4)
                for name, record in result.records.items()
            },
        }
        for index in chosen
        if index < len(result.thumbnails)
    ]


def read_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a benchmark result file and check its shape.

    Every field the format defines is checked where present (``methods`` must
    be); a number may be ``null`` (undefined). Files of an older
    ``format_version`` lack the newer fields and are read as they are.

    Args:
        path (str or os.PathLike): A ``captum-igcam benchmark --json`` file.

    Returns:
        dict: The result.

    Raises:
        ResultFileError: If the file cannot be read, is not UTF-8 JSON, is
            nested too deeply, or a field has the wrong type or size
            (naming the file and the field).

    Example::

        >>> read_result("bench.json")["methods"]["igcam"]["ebpg"]
        0.61
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as error:
        raise ResultFileError(path, "", f"cannot read it ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise ResultFileError(
            path,
            "",
            f"expected UTF-8 text, got byte {error.object[error.start]:#04x} "
            f"at offset {error.start}",
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultFileError(
            path,
            "",
            f"expected JSON, got an error at line {error.lineno} "
            f"column {error.colno}: {error.msg}",
        ) from None
    except RecursionError:
        raise ResultFileError(path, "", "expected JSON, got nesting too deep") from None
    _Checker(path).result(data)
    return data


class _Checker:
    """The shape check of :func:`read_result`; each method checks one field."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    def fail(self, field: str, expected: str, value: Any) -> None:
        shown = type(value).__name__ if isinstance(value, (dict, list)) else repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise ResultFileError(self.path, field, f"expected {expected}, got {shown}")

    def wrong_count(self, field: str, expected: str, count: int) -> None:
        raise ResultFileError(self.path, field, f"expected {expected}, got {count}")

    def of_type(self, field: str, value: Any, kind: type | tuple, expected: str) -> Any:
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.fail(field, expected, value)
        return value

    def number(self, field: str, value: Any) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            self.fail(field, "a number or null", value)

    def numbers(self, field: str, value: Any, size: int | None = None) -> None:
        self.of_type(field, value, list, "a list of numbers")
        if size is not None and len(value) != size:
            self.wrong_count(field, f"{size} numbers", len(value))
        for index, item in enumerate(value):
            self.number(f"{field}[{index}]", item)

    def strings(self, field: str, value: Any, nullable: bool = False) -> None:
        self.of_type(field, value, list, "a list of strings")
        kinds = (str, type(None)) if nullable else str
        for index, item in enumerate(value):
            self.of_type(f"{field}[{index}]", item, kinds, "a string")

    def estimate(self, field: str, value: Any) -> None:
        self.of_type(field, value, dict, 'an object {"mean", "ci95"}')
        self.number(f"{field}.mean", value.get("mean"))
        self.numbers(f"{field}.ci95", value.get("ci95"), 2)

    def table(self, field: str, value: Any, check: Callable[[str, Any], None]) -> None:
        self.of_type(field, value, dict, "an object")
        for key, item in value.items():
            check(f"{field}.{key}", item)

    def result(self, data: Any) -> None:
        if not isinstance(data, dict) or "methods" not in data:
            found = "no 'methods'" if isinstance(data, dict) else type(data).__name__
            raise ResultFileError(
                self.path,
                "",
                "not the JSON of captum-igcam benchmark --json (expected an "
                f"object with 'methods', got {found})",
            )
        version = data.get("format_version", 1)
        self.of_type("format_version", version, int, "an integer")
        if not 1 <= version <= FORMAT_VERSION:
            self.fail("format_version", f"1 to {FORMAT_VERSION}", version)
        self.table("methods", data["methods"], self.method)
        for key in ("dataset", "model", "layer"):
            if data.get(key) is not None:
                self.of_type(key, data[key], str, "a string")
        if "n_images" in data:
            self.of_type("n_images", data["n_images"], int, "an integer")
        for key in ("settings", "versions", "sanity"):
            if key in data:
                self.of_type(key, data[key], dict, "an object")
        for key in ("notes", "skipped"):
            if key in data:
                self.strings(key, data[key])
        if data.get("top1_accuracy") is not None:
            self.estimate("top1_accuracy", data["top1_accuracy"])
        images = data.get("images")
        if images is not None:
            self.strings("images", images)
            if "image_sha256" in data:
                self.strings("image_sha256", data["image_sha256"], nullable=True)
                if len(data["image_sha256"]) != len(images):
                    self.wrong_count(
                        "image_sha256",
                        f"one digest per image ({len(images)})",
                        len(data["image_sha256"]),
                    )
        if "objects" in data:
            self.objects(data["objects"], len(images or []))
        if "values" in data:
            self.table("values", data["values"], self.method_values)
        if "curves" in data:
            self.table("curves", data["curves"], self.method_values)
        if "examples" in data:
            self.examples(data["examples"], len(images or []))

    def method(self, field: str, row: Any) -> None:
        self.of_type(field, row, dict, "an object of metrics")
        for key, value in row.items():
            where = f"{field}.{key}"
            if key == "ci95":
                self.table(where, value, lambda f, v: self.numbers(f, v, 2))
            elif key == "cost":
                self.of_type(where, value, dict, "an object")
                for name in ("seconds_per_image", "peak_memory_mb"):
                    self.number(f"{where}.{name}", value.get(name))
            elif key.startswith("difference_vs_"):
                self.table(where, value, self.estimate)
            else:
                self.number(where, value)

    def method_values(self, field: str, value: Any) -> None:
        self.table(field, value, self.numbers)

    def objects(self, objects: Any, n_images: int) -> None:
        self.of_type("objects", objects, list, "a list of objects")
        for index, item in enumerate(objects):
            where = f"objects[{index}]"
            self.of_type(where, item, dict, 'an object {"image", "label", ...}')
            self.image_index(f"{where}.image", item.get("image"), n_images)
            self.number(f"{where}.box_fraction", item.get("box_fraction"))

    def image_index(self, field: str, value: Any, n_images: int) -> None:
        self.of_type(field, value, int, "an image index")
        if not 0 <= value < n_images:
            self.fail(field, f"an index below {n_images}", value)

    def examples(self, examples: Any, n_images: int) -> None:
        self.of_type("examples", examples, list, "a list of objects")
        for index, item in enumerate(examples):
            where = f"examples[{index}]"
            self.of_type(where, item, dict, 'an object {"image", "maps", ...}')
            self.image_index(f"{where}.image", item.get("image"), n_images)
            self.png(f"{where}.thumbnail_png", item.get("thumbnail_png"))
            self.table(f"{where}.maps", item.get("maps"), self.grid)

    def png(self, field: str, value: Any) -> None:
        self.of_type(field, value, str, "a base64-encoded PNG")
        try:
            data = base64.b64decode(value, validate=True)
        except ValueError:
            data = b""
        if not data.startswith(PNG_SIGNATURE):
            self.fail(field, "a base64-encoded PNG", value)

    def grid(self, field: str, value: Any) -> None:
        self.of_type(field, value, list, "a list of rows of numbers")
        if not value or any(not isinstance(row, list) for row in value):
            self.fail(field, "a non-empty list of rows of numbers", value)
        for index, row in enumerate(value):
            self.numbers(f"{field}[{index}]", row, len(value[0]))
