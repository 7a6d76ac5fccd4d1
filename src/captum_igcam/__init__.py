"""Integrated Grad-CAM for Captum."""

__version__ = "0.1.0"
