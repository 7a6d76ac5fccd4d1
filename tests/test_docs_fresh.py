"""The docs cannot go stale: what README.md, docs/ and tutorials/ state about
the code is checked against the code.

Each check is a function returning the problems it finds, so that the tests
can show it fails when the code changes under the docs (a changed default
is reported), not only that it passes today.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path

import pytest

from captum_igcam import IntegratedLayerGradCam
from captum_igcam.app import explain, methods, models
from captum_igcam.app.settings import MethodSettings
from captum_igcam.cli import _options, build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
#: Default cells that stand for "no value" (argparse's None).
NO_VALUE = {"none", "model's default", "required", "bundled photos"}


def subparser(name: str) -> argparse.ArgumentParser:
    """The parser of one ``captum-igcam`` subcommand."""
    actions = build_parser()._subparsers._group_actions[0]
    return actions.choices[name]


def documented_options(markdown: str) -> list[tuple[str, str]]:
    """``(option, default cell)`` of each option row of the tables."""
    # Option tables have three columns: option, default, meaning.
    rows = re.findall(
        r"^\| `(--[a-z][a-z-]*)[^`]*` \| ([^|\n]*?) \| \S", markdown, re.M
    )
    return [(option, cell.replace("`", "").strip()) for option, cell in rows]


def code_default(action: argparse.Action) -> set[str]:
    """How a docs table may write an option's default, from the code."""
    if action.nargs == 0:  # a flag
        return {"off"}
    value = action.default
    fields = {option: field for field, option in _options._SETTINGS_OPTIONS.items()}
    if value is None and action.dest in fields:
        value = getattr(MethodSettings(), fields[action.dest])
        if action.dest == "model" and value is None:
            value = models.EMBEDDED_MODEL
    if value is None:
        return NO_VALUE
    if isinstance(value, (list, tuple)):
        return {",".join(value)}
    if isinstance(value, Path):
        return {f"./{value}", str(value)}
    return {str(value)}


def option_table_problems(
    markdown: str, parser: argparse.ArgumentParser, complete: bool = True
) -> list[str]:
    """Rows naming unknown options, given twice, or with another default;
    with ``complete``, also the parser's options that no row names."""
    actions = {
        option: action
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    rows = documented_options(markdown)
    problems = []
    seen = [option for option, _ in rows]
    for option in sorted({o for o in seen if seen.count(o) > 1}):
        problems.append(f"{option}: documented {seen.count(option)} times")
    for option, cell in rows:
        if option not in actions:
            problems.append(f"{option}: documented, but the command has no such option")
        elif cell not in code_default(actions[option]):
            expected = " or ".join(sorted(code_default(actions[option])))
            problems.append(f"{option}: the docs say {cell!r}, the code {expected!r}")
    if complete:
        problems += [f"{o}: not documented" for o in sorted(set(actions) - set(seen))]
    return problems


def test_cli_md_lists_explains_options_once_with_the_codes_defaults() -> None:
    text = (DOCS / "cli.md").read_text()
    assert option_table_problems(text, subparser("explain")) == []


def test_explain_dataset_md_defaults_are_the_codes() -> None:
    text = (DOCS / "explain-dataset.md").read_text()
    assert documented_options(text)  # the table is found
    assert (
        option_table_problems(text, subparser("explain-dataset"), complete=False) == []
    )


def test_report_md_lists_every_option() -> None:
    text = (DOCS / "report.md").read_text()
    assert option_table_problems(text, subparser("report")) == []


def test_a_changed_default_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (DOCS / "cli.md").read_text()
    changed = functools.partial(MethodSettings, n_steps=32)
    monkeypatch.setattr(sys.modules[__name__], "MethodSettings", changed)
    assert option_table_problems(text, subparser("explain")) == [
        "--steps: the docs say '50', the code '32'"
    ]


def test_duplicated_and_missing_rows_are_reported() -> None:
    text = (DOCS / "cli.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `--layer"))
    twice = text.replace(row, f"{row}\n{row}")
    assert option_table_problems(twice, subparser("explain")) == [
        "--layer: documented 2 times"
    ]
    assert option_table_problems(text.replace(row, ""), subparser("explain")) == [
        "--layer: not documented"
    ]


def parameter_table_problems(page: str, function: object) -> list[str]:
    """Rows of the ``attribute`` table whose default is not the code's."""
    section = page.split("# Parameters of `attribute`")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| `?([^|`]*?)`? \|", section, re.M)
    signature = inspect.signature(function).parameters
    problems = []
    for name, cell in rows:
        if name not in signature:
            problems.append(f"{name}: documented, but attribute has no such parameter")
            continue
        default = signature[name].default
        documented = cell.split(" (")[0].strip()  # "None (zeros)" -> "None"
        if documented.strip("\"'") != str(default):
            problems.append(f"{name}: the docs say {cell!r}, the code {default!r}")
    return problems


def test_documented_attribute_defaults_are_the_codes() -> None:
    page = (DOCS / "parameters.md").read_text()
    assert parameter_table_problems(page, IntegratedLayerGradCam.attribute) == []


def test_a_changed_attribute_default_is_reported() -> None:
    def attribute(inputs, baselines=None, n_steps=32, method="gausslegendre"):  # noqa: ANN001, ANN202
        """Stand-in with another ``n_steps`` default."""

    page = (DOCS / "parameters.md").read_text()
    problems = parameter_table_problems(page, attribute)
    assert "n_steps: the docs say '50', the code 32" in problems


def test_methods_table_lists_every_registered_method_once() -> None:
    text = (DOCS / "cli.md").read_text()
    section = text.split("### Methods")[1].split("\n## ")[0]
    names = re.findall(r"^\| `([a-z+-]+)` \|", section, re.M)
    assert sorted(names) == sorted(methods.METHODS)


def test_benchmark_help_shows_the_default_methods() -> None:
    from captum_igcam import evaluation

    text = subparser("benchmark").format_help()
    assert "%%" not in text
    assert ",".join(evaluation.DEFAULT_METHODS) in " ".join(text.split()).replace(
        ", ", ","
    )


def figure_settings_problems(recorded: dict[str, object]) -> list[str]:
    """Settings of docs/images/chelsea.png that are no longer the defaults."""
    defaults = MethodSettings()
    current = {
        "model": defaults.model or models.EMBEDDED_MODEL,
        "layer": defaults.layer or models.EMBEDDED_DEFAULT_LAYER,
        "methods": list(explain.DEFAULT_METHODS),
        "steps": defaults.n_steps,
        "approximation_method": defaults.method,
        "baseline": defaults.baseline,
    }
    return [
        f"{name}: the figure has {recorded.get(name)!r}, the default is {value!r} "
        "(python docs/make_figures.py chelsea draws it again)"
        for name, value in current.items()
        if recorded.get(name) != value
    ]


def test_headline_figure_was_drawn_with_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded = json.loads((DOCS / "images" / "chelsea.json").read_text())
    assert figure_settings_problems(recorded) == []
    monkeypatch.setattr(models, "EMBEDDED_DEFAULT_LAYER", "_bn1")
    assert [p.split(":")[0] for p in figure_settings_problems(recorded)] == ["layer"]


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.M | re.S)


@pytest.mark.parametrize("document", ["README.md", "docs/cli.md", "docs/faq.md"])
def test_python_snippets_run_as_written(
    document: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each document's blocks run one after the other, in one namespace."""
    pytest.importorskip("matplotlib").use("Agg")
    blocks = python_blocks((ROOT / document).read_text())
    assert blocks
    monkeypatch.chdir(tmp_path)  # files the snippets write land here
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks:
        exec(compile(block, document, "exec"), namespace)  # noqa: S102


def test_readme_quotes_no_test_counts() -> None:
    tests = README.read_text().split("### Tests")[1].split("\n## ")[0]
    assert not re.search(r"\(\d+\)|\b\d+ (fast |slow )?tests\b", tests)


def _tutorial_times() -> object:
    path = ROOT / "benchmarks" / "tools" / "tutorial_times.py"
    spec = importlib.util.spec_from_file_location("tutorial_times", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_tutorial_has_a_time_budget() -> None:
    pytest.importorskip("nbclient")
    notebooks = sorted(path.name for path in (ROOT / "tutorials").glob("*.ipynb"))
    assert sorted(_tutorial_times().BUDGETS_S) == notebooks


def extra_packages(extras: dict[str, list[str]], extra: str) -> set[str]:
    """Package names an extra installs, following ``captum-igcam[...]``."""
    names = set()
    for requirement in extras[extra]:
        name = re.split(r"[<>=!~\[; ]", requirement)[0]
        if name == "captum-igcam":
            inner = requirement.split("[")[1].split("]")[0].split(",")
            names |= set().union(*(extra_packages(extras, e) for e in inner))
        else:
            names.add(name)
    return names


def test_the_tutorials_open_with_the_documented_command() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    pattern = r'^pip install -e "\.\[(\w+)\]" && jupyter lab tutorials/$'
    readme = (ROOT / "tutorials" / "README.md").read_text()
    (extra,) = re.findall(pattern, readme, re.M)
    assert re.findall(pattern, README.read_text(), re.M) == [extra]
    assert "jupyterlab" in extra_packages(extras, extra)


def numbers_not_in(text: str, source: str) -> list[str]:
    """Numbers of ``text`` (0.xxx, signed or not) that no number of ``source``
    rounds to, at the quoted number's decimals and in absolute value."""
    found = [abs(float(n)) for n in re.findall(r"[+-]?\d+\.\d+", source)]
    missing = []
    for quoted in re.findall(r"[+-]?\b0\.\d{2,4}\b", text):
        decimals = len(quoted.split(".")[1])
        value = abs(float(quoted))
        if not any(abs(round(n, decimals) - value) < 1e-9 for n in found):
            missing.append(quoted)
    return missing


def test_variant_study_numbers_are_the_studys() -> None:
    """README's and tutorial 3's summaries quote benchmarks/studies/variant_study.md
    (or, for the quoted real-photo figures, docs/variants.md)."""
    study = (ROOT / "benchmarks" / "studies" / "variant_study.md").read_text()
    quoted = study + (DOCS / "variants.md").read_text()
    readme = README.read_text().split("## Does it beat Grad-CAM?")[1].split("\n## ")[0]
    notebook = json.loads(
        (ROOT / "tutorials" / "03_evaluating_explanations.ipynb").read_text()
    )
    summary = next(
        "".join(cell["source"])
        for cell in notebook["cells"]
        if "".join(cell["source"]).startswith("## Which variant")
    )
    assert numbers_not_in(readme, quoted) == []
    assert numbers_not_in(summary, study) == []
    assert numbers_not_in("EBPG +0.0751", study) == ["+0.0751"]  # the check can fail


def test_cli_md_quotes_the_models_probability_on_chelsea() -> None:
    from captum_igcam.app.images import bundled_images

    text = " ".join((DOCS / "cli.md").read_text().split())
    quoted = re.search(
        r'predicts "([^"]+)" with probability (\d\.\d+) on `chelsea`', text
    )
    assert quoted
    bundle = models.load_model()
    x = bundle.preprocess(bundled_images()["chelsea"]).unsqueeze(0)
    import torch

    with torch.no_grad():
        probabilities = bundle.model(x).softmax(dim=1)[0]
    top = int(probabilities.argmax())
    assert bundle.categories[top] == quoted.group(1)
    assert f"{float(probabilities[top]):.2f}" == quoted.group(2)
