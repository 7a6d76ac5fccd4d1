"""Errors the application reports to its user as one line, without traceback."""

from __future__ import annotations


class UsageError(Exception):
    """A value the user gave cannot be used; the message names the setting.

    The command line prints it as ``captum-igcam: error: <message>`` and exits
    with status 1. It is also raised by the library functions behind the
    commands (for example
    :meth:`captum_igcam.app.settings.MethodSettings.load_model`), so the
    Python API reports the same problems with the same messages.

    Example::

        >>> raise UsageError("device: 'cuda' was asked for but CUDA is not available")
    """
