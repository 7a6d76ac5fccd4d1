"""How the command line names the option an application error is about."""

from __future__ import annotations

import pytest

from captum_igcam.app.errors import SettingValueError, UnknownModelError, UsageError
from captum_igcam.app.settings import MethodSettings
from captum_igcam.app.task_settings import TaskTarget
from captum_igcam.cli import _options


@pytest.mark.parametrize(
    ("parameter", "option"),
    [
        ("device", "--device"),
        ("n_steps", "--steps"),
        ("internal_batch_size", "--batch-size"),
        ("memory_budget_mb", "--memory-budget"),
        ("random_weights", "--random-weights"),
        ("box", "--box"),
        ("min_iou", "--min-iou"),
        ("out", "--out"),
    ],
)
def test_the_parameter_attribute_names_the_option(parameter, option):
    error = UsageError("is wrong", parameter)
    assert str(error) == f"{parameter}: is wrong"
    assert _options.option_of(error) == option
    assert _options.option_message(error) == f"{option}: is wrong"


def test_the_message_text_is_not_parsed():
    # A message that merely starts like a setting names no option.
    error = UsageError("device: looks like a setting")
    assert error.parameter is None and _options.option_of(error) is None
    assert _options.option_message(error) == "device: looks like a setting"
    assert _options.option_of(ValueError("device: not the application's")) is None
    # A parameter without an option keeps its own name.
    assert _options.option_message(UsageError("odd", "shard_size")) == "shard_size: odd"


def test_the_settings_errors_carry_their_field(monkeypatch):
    with pytest.raises(SettingValueError) as raised:
        MethodSettings(n_steps=0)
    assert (raised.value.parameter, raised.value.reason) == (
        "n_steps",
        "expected a positive integer, got 0",
    )
    assert isinstance(raised.value, ValueError)
    with pytest.raises(SettingValueError) as raised:
        TaskTarget(box="1,1,0,0")
    assert raised.value.parameter == "box"
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError) as raised:
        MethodSettings(device="cuda").check_device()
    assert raised.value.parameter == "device"


def test_an_unknown_model_says_how_to_list_the_names():
    error = UnknownModelError("resnet5", ["resnet50", "resnet34"], 100)
    assert isinstance(error, ValueError) and error.parameter == "model"
    assert str(error).startswith(
        "model: unknown model 'resnet5' (tried as a model name); did you mean "
        "resnet50, resnet34? there are 100 known models "
        "(captum_igcam.app.models.known_models() lists them)"
    )
    assert _options.option_message(error).startswith(
        "--model: unknown model 'resnet5' (tried as a model name); did you mean "
        "resnet50, resnet34? there are 100 known models (--list-models lists them)"
    )
