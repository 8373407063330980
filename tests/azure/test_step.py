"""The pieces of a job step and of the local twin: trial configurations, where inputs go,
placeholders, and Azure ML's sampling conventions."""

from __future__ import annotations

import json
import math
import random
import stat

import pytest

MODEL_CONFIG = {
    "search_iterations": 8,
    "candidates": {
        "linear": {
            "tasks": ["classification"],
            "estimator": {"classification": "sklearn.linear_model.LogisticRegression"},
            "search_space": {"classification": {"C": {"loguniform": [0.01, 100.0]}}},
        },
        "random_forest": {
            "tasks": ["classification"],
            "estimator": {"classification": "sklearn.ensemble.RandomForestClassifier"},
            "search_space": {
                "classification": {
                    "n_estimators": {"randint": [50, 200]},
                    "max_depth": {"choice": [None, 4, 8]},
                }
            },
        },
    },
}


def test_trial_config_pins_the_sampled_candidate_and_values():
    from amlkit.azure.step import trial_model_config
    from amlkit.config import ModelConfig

    sampled = {
        "random_forest__n_estimators": "120.0",
        "random_forest__max_depth": "None",
        "linear__C": "3.5",
    }
    trial = trial_model_config(MODEL_CONFIG, "random_forest", sampled)
    assert list(trial["candidates"]) == ["random_forest"]
    assert trial["search_iterations"] == 1
    space = trial["candidates"]["random_forest"]["search_space"]["classification"]
    assert space == {"n_estimators": {"choice": [120]}, "max_depth": {"choice": [None]}}
    ModelConfig.from_dict(trial)  # still a valid model_config.json


def test_trial_config_refuses_an_unknown_candidate_or_choice():
    from amlkit.azure.step import trial_model_config

    with pytest.raises(ValueError, match=r"candidate 'svm' is not in model_config\.json"):
        trial_model_config(MODEL_CONFIG, "svm", {})
    with pytest.raises(ValueError, match="'5' is not one of the choices"):
        trial_model_config(MODEL_CONFIG, "random_forest", {"random_forest__max_depth": "5"})


def test_a_version_folder_input_goes_under_its_data_set_and_version(tmp_path):
    from amlkit.azure.step import placement

    version = tmp_path / "asset"
    version.mkdir()
    (version / "manifest.json").write_text(json.dumps({"dataset": "penguins", "version": "ab12"}))
    assert placement("data/processed", version) == "data/processed/penguins/ab12"
    assert placement("data/processed", tmp_path) == "data/processed"


@pytest.mark.parametrize(
    ("marker", "record"),
    [
        ("manifest.json", {"dataset": "../../escape", "version": "ab12"}),
        ("manifest.json", {"dataset": "penguins", "version": "../ab12"}),
        ("model_metadata.json", {"name": "a/b", "version": 1}),
    ],
)
def test_an_input_whose_record_names_a_path_is_refused(tmp_path, marker, record):
    from amlkit.azure.step import placement

    version = tmp_path / "asset"
    version.mkdir()
    (version / marker).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"name '.*' is not allowed"):
        placement("data/processed", version)


def test_placeholders_are_filled_quoted_and_optional_parts_dropped():
    from amlkit.azure.twin import TwinError, substitute

    values = {"inputs": {"a": "x y", "n": "2"}, "outputs": {"o": "/tmp/out"}}
    command = "run ${{inputs.a}} --n ${{ inputs.n }} $[[--b ${{inputs.b}}]] > ${{outputs.o}}/f"
    assert substitute(command, values) == "run 'x y' --n 2  > /tmp/out/f"
    with pytest.raises(TwinError, match=r"names \$\{\{inputs.b\}\}"):
        substitute("run ${{inputs.b}}", values)


@pytest.mark.parametrize(
    ("distribution", "check"),
    [
        ({"type": "choice", "values": ["a", "b"]}, lambda v: v in ("a", "b")),
        ({"type": "uniform", "min_value": 1, "max_value": 2}, lambda v: 1 <= v <= 2),
        (
            {"type": "loguniform", "min_value": math.log(0.01), "max_value": math.log(100)},
            lambda v: 0.01 <= v <= 100,
        ),
        (
            {"type": "quniform", "min_value": 50, "max_value": 199, "q": 1},
            lambda v: v == int(v) and 50 <= v <= 199,
        ),
        ({"type": "randint", "upper": 3}, lambda v: v in (0, 1, 2)),
    ],
    ids=["choice", "uniform", "loguniform", "quniform", "randint"],
)
def test_sampling_follows_azure_mls_distributions(distribution, check):
    from amlkit.azure.twin import sample_value

    rng = random.Random(0)
    assert all(check(sample_value(distribution, rng)) for _ in range(200))


def test_the_sweeps_search_space_translates_scipy_conventions():
    from amlkit.azure.sweep import azure_distribution

    assert azure_distribution({"randint": [1, 5]}, "random") == {
        "type": "quniform",
        "min_value": 1,
        "max_value": 4,
        "q": 1,
    }
    log = azure_distribution({"loguniform": [0.01, 100.0]}, "random")
    assert (math.exp(log["min_value"]), math.exp(log["max_value"])) == pytest.approx((0.01, 100))
    grid = azure_distribution({"loguniform": [0.01, 100.0]}, "bayesian")
    assert grid["type"] == "choice" and grid["values"][0] == 0.01 and grid["values"][-1] == 100


def test_an_input_the_stage_writes_to_is_copied_writable_from_its_read_only_mount(tmp_path):
    from amlkit.azure.step import _layout
    from amlkit.azure.twin_platform import make_read_only

    code = tmp_path / "code"
    (code / "config").mkdir(parents=True)
    mount = tmp_path / "mount" / "penguins" / "v1"
    mount.mkdir(parents=True)
    (mount / "data.csv").write_text("a\n1\n")
    make_read_only(tmp_path / "mount")
    root = tmp_path / "root"
    _layout(root, code, [("data/raw", tmp_path / "mount")], {"data/raw"})
    copy = root / "data" / "raw"
    # permission bits, not a write attempt: root (CI containers) writes through them
    assert all(p.stat().st_mode & stat.S_IWUSR for p in [copy, *copy.rglob("*")])
    (copy / "penguins" / "v1" / "data.csv").write_text("a\n2\n")
    assert (mount / "data.csv").read_text() == "a\n1\n"  # the mount itself is untouched


@pytest.mark.parametrize(
    "spec",
    [
        {"code_configuration": {}, "mini_batch_size": 10},
        {"type": "model", "code_configuration": {}, "settings": {"mini_batch_size": 10}},
    ],
    ids=["flat", "settings"],
)
def test_a_batch_deployment_is_recognised_in_the_legacy_and_the_current_schema(spec):
    from amlkit.azure.twin import spec_kind

    assert spec_kind(spec) == "batch_deployment"
