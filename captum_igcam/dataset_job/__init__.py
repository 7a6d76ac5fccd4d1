"""The data-set job: explain every image of a folder into shards, and read the
shards back (:func:`open_maps`)."""

from captum_igcam.dataset_job.maps_io import open_maps

__all__ = ["open_maps"]
