"""Class maps: which model outputs count as an annotated class name.

A class map is a JSON object such as ``{"cat": [281, 285], "dog": 151}``
(``--class-map FILE``), used by the ``voc:`` source. Values are checked
when the map is read; whether an index exists in the model is checked by the
benchmark loop against the model's outputs, with an error naming the map's
file and key (:attr:`Annotation.source`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

EXPECTED = "expected a JSON object of class name -> index or list of indices"


def read_class_map(path: str | os.PathLike[str]) -> dict[str, list[int]]:
    """Read a JSON class map: ``{"cat": 281, "dog": [151, 152], ...}``.

    Args:
        path (str or os.PathLike): The JSON file.

    Returns:
        dict[str, list[int]]: Class name -> model output indices.

    Raises:
        ValueError: If the file is missing, not JSON, or not such a mapping;
            the message names the file and, for a bad value, the key.

    Example::

        >>> read_class_map("voc_classes.json")["cat"]
        [7]
    """
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            raw = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"class_map: cannot read {name!r} ({error})") from error
    checked = check_class_map(raw, name)
    return {label: sorted(indices) for label, indices in checked.items()}


def check_class_map(raw: object, file: str = "") -> dict[str, frozenset[int]]:
    """Check a class map's shape and values.

    Args:
        raw (object): The decoded map.
        file (str, optional): The map's file, named by errors.
            Default: "" (no file)

    Returns:
        dict[str, frozenset[int]]: Class name -> model output indices.

    Raises:
        ValueError: If ``raw`` is not a non-empty mapping of names to a
            non-negative integer or a non-empty list of them (``true``,
            ``281.0`` and ``"281"`` are not integers).
    """
    where = f"class_map: {file!r}, " if file else "class_map: "
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"{where}{EXPECTED}")
    checked = {}
    for name, value in raw.items():
        indices = [value] if not isinstance(value, Sequence | Mapping) else value
        if (
            isinstance(indices, str | Mapping)
            or not indices
            or not all(_is_index(index) for index in indices)
        ):
            raise ValueError(
                f"{where}key {str(name)!r}: {EXPECTED} (non-negative "
                f"integers), got {value!r}"
            )
        checked[str(name)] = frozenset(int(index) for index in indices)
    return checked


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
