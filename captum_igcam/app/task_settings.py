"""What a segmentation or detection explanation explains: :class:`TaskTarget`.

Imports neither torch nor Captum, so the command line checks these options
before it loads anything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: What :class:`~captum_igcam.targets.DetectionScore` explains (kept equal to
#: ``captum_igcam.targets.DETECTION_OUTPUTS`` by a test).
DETECTION_OUTPUTS = ("score", "score+iou")


def parse_box(text: str | None) -> int | tuple[float, float, float, float] | None:
    """``"INDEX"`` -> a detection's rank; ``"x1,y1,x2,y2"`` -> a box in photo pixels.

    Raises:
        ValueError: Anything else, or a box without area.

    Example::

        >>> parse_box("0"), parse_box("10,20,110,80")
        (0, (10.0, 20.0, 110.0, 80.0))
    """
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        return int(text)
    parts = text.split(",")
    try:
        x1, y1, x2, y2 = (float(part) for part in parts)
    except ValueError:
        raise ValueError(
            "box: expected a detection index (0 is the highest score) or "
            f"x1,y1,x2,y2 in the photo's pixels, got {text!r}"
        ) from None
    if not (x1 < x2 and y1 < y2):
        raise ValueError(f"box: expected x1 < x2 and y1 < y2, got {text!r}")
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
            raise ValueError(
                f"detection_output: expected one of {', '.join(DETECTION_OUTPUTS)}, "
                f"got {self.detection_output!r}"
            )
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(
                f"min_iou: expected a number in [0, 1], got {self.min_iou}"
            )

    def check_task(self, task: str) -> None:
        """Raise ValueError if these options do not fit ``task``.

        A segmentation region is a box ``x1,y1,x2,y2``, not a detection
        index.
        """
        box = parse_box(self.box)
        if task == "segmentation" and isinstance(box, int):
            raise ValueError(
                "box: a segmentation region is a box x1,y1,x2,y2 in the photo's "
                f"pixels, not a detection index ({box})"
            )

    def describe(self) -> dict[str, Any]:
        """The options as a JSON-ready dict."""
        return dataclasses.asdict(self)
