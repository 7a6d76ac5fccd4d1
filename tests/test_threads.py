"""Calls from several threads: concurrent, and the maps of calls run alone."""

from __future__ import annotations

import sys
import threading

import torch
from helpers import (
    TinyCNN,
    make_inputs,
)
from torch import Tensor

from captum_igcam import IntegratedLayerGradCam

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
