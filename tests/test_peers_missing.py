"""Without the ``peers`` extra the peer names stay known, and asking for one
fails before any image is explained, naming ``--methods`` and the extra.

Runs with and without pytorch-grad-cam installed: its absence is simulated.
"""

from __future__ import annotations

import sys

import pytest
from helpers import make_inputs, make_model

from captum_igcam import cli
from captum_igcam.app import peer_methods
from captum_igcam.app.methods import METHODS
from captum_igcam.app.settings import MethodSettings

HINT = 'pip install "captum-igcam[peers]"'


@pytest.fixture
def without_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)


def test_every_peer_method_is_registered_under_its_name():
    names = [peer.name for peer in peer_methods.PEER_METHODS]
    assert len(set(names)) == len(names) >= 12
    for peer in peer_methods.PEER_METHODS:
        method = METHODS[peer.name]
        assert (method.title, method.description) == (peer.title, peer.description)


def test_the_plugin_does_not_import_the_library():
    """Only a peer method's map imports pytorch-grad-cam."""
    import subprocess

    code = (
        "import sys, captum_igcam, captum_igcam.app.methods; "
        "print('pytorch_grad_cam' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_building_a_peer_method_without_the_library_names_methods_and_the_extra(
    without_library,
):
    model = make_model()
    with pytest.raises(peer_methods.PeersNotInstalledError) as error:
        METHODS["scorecam"].build(model, model.relu2, MethodSettings())
    message = str(error.value)
    assert message.startswith("methods: scorecam is one of the peer methods")
    assert HINT in message and "--methods" in message
    # The registry's own methods need nothing of it.
    METHODS["gradcam"].build(model, model.relu2, MethodSettings())(make_inputs(), 1)


def test_the_benchmark_command_without_the_library_names_methods_and_the_extra(
    without_library, tmp_path, capsys
):
    out = tmp_path / "result.json"
    status = cli.main(
        ["benchmark", "--quick", "--n", "1", "--methods", "gradcam,layercam",
         "--no-progress", "--json", str(out)]
    )  # fmt: skip
    assert status == 1
    error = capsys.readouterr().err
    assert "captum-igcam: error: methods: layercam is one of the peer methods" in error
    assert HINT in error and "--methods" in error
    assert not out.exists()
