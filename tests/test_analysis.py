"""Backend-free helpers: per-step history, classifier metrics, sweep summaries."""

import keras
import numpy as np
import pytest

from alllib import callbacks, experiments, metrics


def test_step_history_recovers_each_step_from_running_means():
    per_step = [[3.0, 1.0, 4.0, 1.0], [5.0, 9.0, 2.0]]  # two epochs
    history = callbacks.StepHistory()
    for epoch, values in enumerate(per_step):
        history.on_epoch_begin(epoch)
        for batch in range(len(values)):
            history.on_train_batch_end(batch, {"loss": np.mean(values[: batch + 1])})
        history.on_epoch_end(epoch)
    assert history.steps == [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_allclose(history.values["loss"], sum(per_step, []))


def test_step_history_averages_chunks_with_steps_per_execution():
    history = callbacks.StepHistory()
    history.set_params({"steps": 5})
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    for epoch in range(2):
        history.on_epoch_begin(epoch)
        # Chunks of 2: Keras reports after steps 2 and 4, and the short last chunk (step 5 only)
        # by its nominal end, 6.
        for batch in (1, 3, 5):
            history.on_train_batch_end(batch, {"x": np.mean(values[: min(batch + 1, 5)])})
        history.on_epoch_end(epoch)
    assert history.steps == [2, 4, 5, 7, 9, 10]
    np.testing.assert_allclose(history.values["x"], [1.5, 3.5, 5.0] * 2)


def test_ece_on_a_hand_computed_case():
    # confidences 0.9, 0.9 (one right), 0.6 (right), 0.5 (wrong); bins of width 1/15
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.5, 0.5]])
    labels = np.array([0, 0, 0, 1])
    # bin (0.8667, 0.9333]: 2 examples, confidence 1.8, correct 1 -> |1 - 1.8| = 0.8
    # bin (0.5333, 0.6]: 1 example, confidence 0.6, correct 1 -> 0.4
    # bin (0.4667, 0.5333]: 1 example, confidence 0.5, correct 0 (argmax 0) -> 0.5
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx((0.8 + 0.4 + 0.5) / 4)
    assert metrics.accuracy(probs, labels) == 0.5
    assert metrics.nll(probs, labels) == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.6, 0.5])))


def test_nll_floor_tells_confidently_wrong_models_apart():
    labels = np.array([0, 0])
    barely = np.array([[1e-9, 1 - 1e-9]] * 2)
    never = np.array([[0.0, 1.0]] * 2)
    assert metrics.nll(barely, labels) == pytest.approx(-np.log(1e-9))  # not capped at 16.1
    assert metrics.nll(never, labels) == pytest.approx(-np.log(np.finfo("float32").tiny))


def test_temperature_scaling_recovers_the_temperature_of_an_overconfident_model():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (20000, 5))
    true = metrics._softmax(logits)
    labels = (true.cumsum(1) < rng.uniform(size=(len(true), 1))).sum(1)  # drawn from `true`
    overconfident = metrics._softmax(3 * logits)
    temperature = metrics.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3, rel=0.05)
    scaled = metrics.scale_temperature(overconfident, temperature)
    np.testing.assert_array_equal(scaled.argmax(1), overconfident.argmax(1))
    assert metrics.nll(scaled, labels) < metrics.nll(overconfident, labels)
    assert metrics.expected_calibration_error(scaled, labels) < 0.02
    with pytest.raises(ValueError, match="`temperature` must be positive"):
        metrics.scale_temperature(overconfident, 0.0)


def test_upper_bin_edges_belong_to_their_bin():
    count, _, _ = metrics.calibration_bins(np.array([[1.0, 0.0], [0.2, 0.8]]), np.array([0, 1]))
    assert count[-1] == 1 and count[11] == 1  # 0.8 = 12/15 closes bin 11, (11/15, 12/15]


def test_matched_accuracy_sees_through_renamed_classes():
    labels = np.repeat(np.arange(4), 25)
    renamed = (labels + 1) % 4
    assert metrics.accuracy(np.eye(4)[renamed], labels) == 0.0
    assert metrics.matched_accuracy(renamed, labels, 4) == 1.0
    assert metrics.matched_accuracy(np.zeros(100, int), labels, 4) == 0.25


def test_summary_table():
    rows = [{"method": "a", "accuracy": v, "ece": 0.1} for v in (0.5, 0.7)] + [
        {"method": "b", "accuracy": 0.9, "ece": 0.2}]
    summary = experiments.summarize(rows, columns=("accuracy", "ece"))
    assert [s["method"] for s in summary] == ["a", "b"]
    assert summary[0]["accuracy"] == pytest.approx(0.6)
    assert summary[0]["accuracy_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    table = experiments.markdown_table(summary, columns=("accuracy", "ece"))
    assert "| a | 0.600 ± 0.141 | 0.100 ± 0.000 | 2 |" in table
    table = experiments.markdown_table(summary, columns=("accuracy", "ece"), formats={"accuracy": ".1f"})
    assert "| a | 0.6 ± 0.1 | 0.100 ± 0.000 | 2 |" in table
    published = {"method": "paper", "accuracy": 0.91234, "ece": float("nan"), "note": "as recalled"}
    table = experiments.markdown_table(summary + [published, {"method": "none", "accuracy": None}],
                                       columns=("accuracy", "ece", "note"))
    assert "| paper | 0.912 |  | as recalled |  |" in table
    assert "| none |  |  |  |  |" in table


def test_unknown_method_settings_are_explained():
    with pytest.raises(ValueError, match="Unknown settings \\['conditonal'\\]"):
        experiments.build({"conditonal": True}, (4,), 3, seed=0)
    with pytest.raises(ValueError, match="Unknown method kind 'svm'"):
        experiments.build({"kind": "svm"}, (4,), 3, seed=0)
    with pytest.raises(ValueError, match="Unknown setting predictor='resnet'; expected one of"):
        experiments.build({"kind": "ce", "predictor": "resnet"}, (4,), 3, seed=0)


def test_the_predictor_is_a_setting_of_every_method():
    """An MLP unless a method asks for the convnet, whatever the image size."""
    for kind in ("ce", "adversarial"):
        mlp = experiments.build({"kind": kind}, (28, 28, 1), 10, seed=0)
        conv = experiments.build({"kind": kind, "predictor": "conv"}, (28, 28, 1), 10, seed=0)
        layers = [lambda m: m.layers, lambda m: m.predictor.layers][kind == "adversarial"]
        assert not any(isinstance(l, keras.layers.Conv2D) for l in layers(mlp))
        assert any(isinstance(l, keras.layers.Conv2D) for l in layers(conv))


def test_a_detailed_sweep_keeps_validation_curves_and_predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = (3 * np.eye(4)[y] + rng.standard_normal((300, 4))).astype("float32")
    train, val = (x[:200], y[:200]), (x[200:], y[200:])
    rows = experiments.sweep({"ce": {"kind": "ce"}, "adversarial": {"conditional": True}},
                             train, val, 3, seeds=[0], epochs=2, details=True)
    for row in rows:
        assert len(row["curve"]) == 2 and row["probs"].shape == (100, 3)
        # the last point of the curve is the row's own accuracy on the same data
        assert row["curve"][-1] == pytest.approx(row["accuracy"], abs=1e-6)
        np.testing.assert_allclose(row["probs"].sum(1), 1, rtol=1e-5)


def test_temperature_at_the_edge_of_its_range_warns():
    labels = np.zeros(200, int)
    always_wrong = np.tile([[0.0, 1.0]], (200, 1))
    with pytest.warns(UserWarning, match="edge of the search range"):
        metrics.fit_temperature(always_wrong, labels)
