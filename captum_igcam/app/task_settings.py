"""What a segmentation or detection explanation explains: :class:`TaskTarget`.

Imports neither torch nor Captum, so the command line checks these options
before it loads anything.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from captum_igcam.app.errors import SettingValueError

#: What :class:`~captum_igcam.targets.DetectionScore` explains (kept equal to
#: ``captum_igcam.targets.DETECTION_OUTPUTS`` by a test).
DETECTION_OUTPUTS = ("score", "score+iou")
#: A detection's rank: ASCII digits only.
_INDEX = re.compile(r"[0-9]+")


def parse_box(text: str | None) -> int | tuple[float, float, float, float] | None:
    """``"INDEX"`` -> a detection's rank; ``"x1,y1,x2,y2"`` -> a box in photo pixels.

    Raises:
        SettingValueError: Anything else (a ValueError naming ``box``): not
            four numbers, a number that is not finite, or a box without area.

    Example::

        >>> parse_box("0"), parse_box("10,20,110,80")
        (0, (10.0, 20.0, 110.0, 80.0))
    """
    if text is None:
        return None
    text = text.strip()
    if _INDEX.fullmatch(text):
        return int(text)
    try:
        x1, y1, x2, y2 = (float(part) for part in text.split(","))
    except ValueError:
        raise SettingValueError(
            "expected a detection index (0 is the highest score) or "
            f"x1,y1,x2,y2 in the photo's pixels, got {text!r}",
            "box",
        ) from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise SettingValueError(f"expected finite coordinates, got {text!r}", "box")
    if not (x1 < x2 and y1 < y2):
        raise SettingValueError(f"expected x1 < x2 and y1 < y2, got {text!r}", "box")
    return (x1, y1, x2, y2)


@dataclasses.dataclass(frozen=True)
class TaskTarget:
    """What a segmentation or detection explanation explains, besides the class.

    Args:
        box (str, optional): Detection: the rank of a detection at the input
            (``"0"``, the highest score, by default; among detections of the
            target class when one is given) or ``"x1,y1,x2,y2"`` in the
            photo's pixels (the label then is the target class, or the
            label of the detection that overlaps the box most). Segmentation:
            ``"x1,y1,x2,y2"`` makes the box the region; by default the region
            is the pixels the model assigns to the class at the input.
            Default: None
        detection_output (str, optional): ``"score"`` or ``"score+iou"``
            (see :class:`~captum_igcam.targets.DetectionScore`).
            Default: "score"
        min_iou (float, optional): The smallest IoU that matches along the
            path.
            Default: 0.5

    Example::

        >>> TaskTarget(box="10,20,110,80").describe()["box"]
        '10,20,110,80'
    """

    box: str | None = None
    detection_output: str = "score"
    min_iou: float = 0.5

    def __post_init__(self) -> None:
        parse_box(self.box)
        if self.detection_output not in DETECTION_OUTPUTS:
            raise SettingValueError(
                f"expected one of {', '.join(DETECTION_OUTPUTS)}, "
                f"got {self.detection_output!r}",
                "detection_output",
            )
        if not 0.0 <= self.min_iou <= 1.0:
            raise SettingValueError(
                f"expected a number in [0, 1], got {self.min_iou}", "min_iou"
            )

    def check_task(self, task: str) -> None:
        """Raise :class:`SettingValueError` if these options do not fit ``task``.

        A classifier takes none of them; a segmentation region is a box
        ``x1,y1,x2,y2``, not a detection index. The error names the first
        option that does not fit.
        """
        box = parse_box(self.box)
        default = TaskTarget().describe()
        if task == "classification" and self.describe() != default:
            given = [f for f, v in self.describe().items() if v != default[f]]
            raise SettingValueError(
                "a region or box is for a segmentation model or a detector; "
                "the model is a classifier",
                given[0],
            )
        if task == "segmentation" and isinstance(box, int):
            raise SettingValueError(
                "a segmentation region is a box x1,y1,x2,y2 in the photo's "
                f"pixels, not a detection index ({box})",
                "box",
            )

    def describe(self) -> dict[str, Any]:
        """The options as a JSON-ready dict."""
        return dataclasses.asdict(self)
