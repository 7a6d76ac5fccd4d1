"""Model-randomisation sanity checks (Adebayo et al., NeurIPS 2018).

A map that explains the model must change when the model's weights are
replaced by random ones. :func:`model_randomisation` re-initialises the
model's layers *in place*, from the logits down, and compares each
method's map on the randomised model with its map on the trained one, on the
same images and for the same (trained model's) predicted class:

- ``"cascading"``: stage ``k`` randomises stages ``0..k`` together (the
  logits first, then layer after layer towards the input);
- ``"independent"``: stage ``k`` randomises stage ``k`` alone.

A stage is a group of modules (by dotted name). Every module in it with a
``reset_parameters`` method is re-initialised by it (PyTorch's own
initialisation: Kaiming-uniform for convolutions and linear layers, unit
scale, zero shift and reset running statistics for batch norms); parameters of
modules without one are redrawn from a normal distribution with the trained
tensor's mean and standard deviation (a constant tensor: a standard normal).
Stage ``k`` draws from torch's generator seeded with ``seed + k``, so a stage
gets the same random weights in both modes. The model's parameters, buffers
and train/eval flags are restored bit for bit afterwards, also when an
exception is raised half way.

Similarities (:data:`SIMILARITIES`), per image, between the two maps resized
to the model input: Spearman rank correlation of the maps and of their
absolute values (:func:`scipy.stats.spearmanr`), SSIM
(:func:`skimage.metrics.structural_similarity`) of the maps min-max
normalised to [0, 1], and the Pearson correlation of their HOG descriptors
(:func:`skimage.feature.hog`). A method passes where the similarity falls to
near zero; summaries carry percentile-bootstrap 95% intervals over images
(:mod:`captum_igcam.evaluation.statistics`).

One module per job: :mod:`.checks` randomises the model and measures the
similarities, :mod:`.tables` writes Markdown tables and JSON, :mod:`.figure`
draws the paper's figure. Their public names are available here.
"""

from captum_igcam.evaluation.sanity.checks import (
    HOG_CELL,
    MODES,
    SIMILARITIES,
    SanityResult,
    Stage,
    compare_sanity,
    default_stages,
    group_stages,
    model_randomisation,
    randomise_modules,
    restored,
    similarities,
    stage_label,
    summarize_sanity,
)
from captum_igcam.evaluation.sanity.figure import randomisation_figure
from captum_igcam.evaluation.sanity.tables import sanity_json, sanity_table

__all__ = [
    "HOG_CELL",
    "MODES",
    "SIMILARITIES",
    "SanityResult",
    "Stage",
    "compare_sanity",
    "default_stages",
    "group_stages",
    "model_randomisation",
    "randomisation_figure",
    "randomise_modules",
    "restored",
    "sanity_json",
    "sanity_table",
    "similarities",
    "stage_label",
    "summarize_sanity",
]
