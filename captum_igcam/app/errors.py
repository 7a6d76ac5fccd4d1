"""Errors the application reports to its user as one line, without traceback.

Each error may carry the ``parameter`` it is about (a field of
:class:`~captum_igcam.app.settings.MethodSettings` or
:class:`~captum_igcam.app.task_settings.TaskTarget`, such as ``"device"`` or
``"box"``), so that the command line can name its own option for it
(``--device``, ``--box``) without reading the message.
"""

from __future__ import annotations


class UsageError(Exception):
    """A value the user gave cannot be used; the message names the setting.

    The command line prints it as ``captum-igcam: error: <message>`` and exits
    with status 1. It is also raised by the library functions behind the
    commands (for example
    :meth:`captum_igcam.app.settings.MethodSettings.load_model`), so the
    Python API reports the same problems with the same messages.

    Args:
        reason (str): What is wrong and what was expected.
        parameter (str, optional): The setting ``reason`` is about; the
            message then reads ``"<parameter>: <reason>"``.
            Default: None

    Attributes:
        parameter (str or None): As given.
        reason (str): As given, without the parameter.

    Example::

        >>> error = UsageError("'cuda' was asked for but is not available", "device")
        >>> str(error), error.parameter
        ("device: 'cuda' was asked for but is not available", 'device')
    """

    def __init__(self, reason: str, parameter: str | None = None) -> None:
        super().__init__(f"{parameter}: {reason}" if parameter else reason)
        self.reason = reason
        self.parameter = parameter


class SettingValueError(UsageError, ValueError):
    """A setting has a value it can never take (bad input, not the model's fault).

    A :class:`ValueError` too, as Python callers expect of a bad argument.
    The command line treats it as an invalid option value: a message naming
    the option, and exit status 2.

    Example::

        >>> raise SettingValueError("expected x1 < x2 and y1 < y2", "box")
    """


class UnknownModelError(UsageError, ValueError):
    """A model name that is neither registered nor a user's model or file.

    Args:
        name (str): The name given.
        close (list[str]): The closest known names, closest first.
        known (int): How many names are known
            (:func:`captum_igcam.app.models.known_models` lists them).
        hint (str, optional): One more sentence, e.g. about a file of that
            name in the working directory.
            Default: ""

    Example::

        >>> str(UnknownModelError("resnet5", ["resnet50"], 110))
        "model: unknown model 'resnet5'; did you mean resnet50? ..."
    """

    def __init__(self, name: str, close: list[str], known: int, hint: str = "") -> None:
        self.name, self.close, self.known, self.hint = name, close, known, hint
        super().__init__(
            self.describe("captum_igcam.app.models.known_models() lists them"), "model"
        )

    def describe(self, listing: str) -> str:
        """The message, saying ``listing`` about how to list the known names."""
        guess = f"did you mean {', '.join(self.close)}? " if self.close else ""
        return (
            f"unknown model {self.name!r} (tried as a model name); {guess}"
            f"{self.hint}there are {self.known} known models ({listing}); a "
            "model of your own is 'module:callable' or a model file path (with "
            "a suffix such as .pt, or a path separator)"
        )
