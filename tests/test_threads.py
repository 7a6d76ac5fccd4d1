"""Calls from several threads: concurrent, and the maps of calls run alone."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import pytest
import torch
from helpers import CLASSES, TinyCNN, make_inputs
from torch import Tensor

from captum_igcam import IntegratedLayerGradCam, LayerSpaceIntegratedGradCam

THREAD_ROUNDS = 6


def test_concurrent_calls_on_one_model_give_the_single_thread_maps():
    """Two threads, each cycling through calls that share the model's modules.

    The calls explain the same layer, another layer, and the same layer
    through a plain function that hides the model.
    """
    model = TinyCNN().double().eval()
    calls = [
        (IntegratedLayerGradCam(model, model.conv2), [1, 3]),
        (IntegratedLayerGradCam(model, model.conv1), 4),
        (IntegratedLayerGradCam(lambda x: model(x), model.conv2), [0, 2]),
    ]
    inputs = [make_inputs() for _ in calls]
    expected = [
        igcam.attribute(x, target=target, n_steps=4)
        for (igcam, target), x in zip(calls, inputs)
    ]
    results: list[list[tuple[int, Tensor]]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(thread: int) -> None:
        start.wait()
        try:
            for round_ in range(THREAD_ROUNDS):
                index = (round_ + thread) % len(calls)
                igcam, target = calls[index]
                result = igcam.attribute(inputs[index], target=target, n_steps=4)
                results[thread].append((index, result))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as much as possible
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch_interval)
    assert errors == []
    for per_thread in results:
        assert len(per_thread) == THREAD_ROUNDS
        for index, result in per_thread:
            assert torch.equal(result, expected[index])


class MeetingNet(TinyCNN):
    """TinyCNN whose first forward pass waits until the other model's first
    pass has started: two calls that could not overlap would never meet."""

    def __init__(self, meeting: threading.Barrier) -> None:
        super().__init__(classes=CLASSES)
        self.meeting = meeting
        self.met = False

    def forward(self, x: Tensor) -> Tensor:
        if not self.met:
            self.met = True
            # The timeout only turns a deadlock into an error; it is no limit
            # on speed (both threads reach the barrier within milliseconds).
            self.meeting.wait(timeout=120)
        return super().forward(x)


def _in_threads(*work: Callable[[], Tensor]) -> list[Tensor]:
    results: list[Tensor | None] = [None] * len(work)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = work[index]()
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@pytest.mark.parametrize(
    "explainer_class", [IntegratedLayerGradCam, LayerSpaceIntegratedGradCam]
)
def test_calls_on_two_models_overlap_and_give_the_maps_alone(explainer_class):
    meeting = threading.Barrier(2)
    models = [MeetingNet(meeting).double().eval() for _ in range(2)]
    inputs = [make_inputs() for _ in models]
    explainers = [explainer_class(model, model.conv2) for model in models]
    results = _in_threads(
        *[
            lambda e=explainer, x=x: e.attribute(x, target=[1, 3], n_steps=4)
            for explainer, x in zip(explainers, inputs)
        ]
    )
    assert all(model.met for model in models)
    for explainer, x, result in zip(explainers, inputs, results):
        assert torch.equal(result, explainer.attribute(x, target=[1, 3], n_steps=4))


@pytest.mark.parametrize(
    "explainer_class", [IntegratedLayerGradCam, LayerSpaceIntegratedGradCam]
)
def test_forward_passes_in_another_thread_do_not_see_the_calls_hooks(
    explainer_class,
):
    """The explained layer's hook acts only in its own call's thread."""
    model = TinyCNN().double().eval()
    inputs, others = make_inputs(), torch.randn(3, 3, 8, 8, dtype=torch.float64)
    explainer = explainer_class(model, model.conv2)
    expected_maps = explainer.attribute(inputs, target=[0, 4], n_steps=4)
    with torch.no_grad():
        expected_outputs = model(others)

    def explain() -> Tensor:
        return torch.stack(
            [
                explainer.attribute(inputs, target=[0, 4], n_steps=4)
                for _ in range(THREAD_ROUNDS)
            ]
        )

    def plain_forward() -> Tensor:
        with torch.no_grad():
            return torch.stack([model(others) for _ in range(10 * THREAD_ROUNDS)])

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as much as possible
    try:
        maps, outputs = _in_threads(explain, plain_forward)
    finally:
        sys.setswitchinterval(switch_interval)
    assert all(torch.equal(m, expected_maps) for m in maps)
    assert all(torch.equal(o, expected_outputs) for o in outputs)
