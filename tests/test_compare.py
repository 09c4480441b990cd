"""`python -m alllib compare`: the command line, and resuming a killed sweep."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "alllib", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, **kwargs)


def test_help_documents_every_flag_without_starting_a_framework():
    result = cli("compare", "--help")
    assert result.returncode == 0 and result.stderr == ""
    for flag in ("--datasets", "--methods", "--seeds", "--epochs", "--batch-size", "--out",
                 "--no-plots"):
        assert flag in result.stdout
    # --help and flag errors answer at once: neither imports Keras or a backend.
    probe = ("import sys\nfrom alllib.__main__ import main\n"
             "for argv in (['--help'], ['compare', '--help'], ['compare', '--epochs', '0']):\n"
             "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
             "print('loaded:', sorted({'keras', 'tensorflow', 'jax', 'torch'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "loaded: []", result.stdout + result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "ce,svm"], "unknown method 'svm' for --methods; choose from: ce, "),
        (["--datasets", "imagenet"], "unknown dataset 'imagenet' for --datasets; choose from: digits"),
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--seeds", "two"], "argument --seeds: invalid int value: 'two'"),
        (["--colour"], "unrecognized arguments: --colour"),
        # argparse would take a prefix of --seeds for it and overwrite a summary
        (["--seed", "2"], "unrecognized arguments: --seed 2"),
        (["--out", "README.md"], "The output folder 'README.md' is an existing file"),
        (["--out", "README.md/sub"], "Cannot write to the output folder 'README.md/sub'"),
    ],
)
def test_bad_flags_give_one_line_and_write_nothing(args, message):
    before = sorted(os.listdir(ROOT))
    result = cli("compare", *args)
    assert result.returncode == 2
    assert sorted(os.listdir(ROOT)) == before  # no results/ folder or anything else left behind
    # TensorFlow's C++ runtime may print start-up lines on import; ours is one line, the last.
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert "usage:" not in result.stderr


def test_a_dataset_that_cannot_be_had_offline_is_refused_before_anything_runs(tmp_path):
    from alllib import data

    try:
        data.source("mnist")
        pytest.skip("MNIST is available here")
    except data.DatasetUnavailable:
        pass
    out = tmp_path / "out"
    result = cli("compare", "--datasets", "digits,mnist", "--out", str(out))
    assert result.returncode == 2 and "runs to do" not in result.stdout
    (error,) = [line for line in result.stderr.splitlines() if "error:" in line]
    assert "Dataset 'mnist' was not found" in error and "--datasets digits" in error
    assert "ring" not in error and not out.exists()


def rows(out):
    path = os.path.join(out, "runs.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:  # strict JSON: NaN or Infinity would fail here
        return json.load(f, parse_constant=lambda name: pytest.fail(f"runs.json holds {name}"))


def test_a_killed_sweep_resumes_without_repeating_runs(tmp_path):
    out = str(tmp_path / "sweep")
    args = ["compare", "--methods", "ce,adversarial", "--seeds", "3", "--epochs", "2",
            "--no-plots", "--out", out]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "alllib", *args], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(rows(out)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = rows(out)
    assert 2 <= len(before) < 6, f"kill the sweep midway, not at {len(before)} of 6 runs"

    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert f"{6 - len(before)} runs to do, {len(before)} already in" in result.stdout
    after = rows(out)
    keys = [(r["method"], r["seed"]) for r in after]
    assert len(after) == 6 and len(set(keys)) == 6
    assert after[: len(before)] == before  # finished runs were kept, not repeated
    with open(os.path.join(out, "runs.csv"), newline="") as f:
        table = list(csv.reader(f))
    assert len(table) == 7 and all(len(line) == len(table[0]) for line in table)
    assert "| digits | adversarial |" in result.stdout
    assert "- `adversarial`: " in result.stdout and "standard deviation over 3 seeds" in result.stdout
    assert "Written to " in result.stdout and "summary.md" in result.stdout
    assert [r["d_acc"] for r in after if r["method"] == "ce"] == [None] * 3  # no d_acc for CE
    assert not any(name.endswith(".tmp") for name in os.listdir(out))
    assert len(os.listdir(os.path.join(out, "probs"))) == 6
    with open(os.path.join(out, "step_times.json")) as f:
        (timing,) = json.load(f).values()
    assert sorted(timing["ratio_to_ce"]) == ["adversarial", "ce"]


def test_adding_a_method_times_it_and_keeps_the_others(tmp_path):
    from alllib import experiments

    out = str(tmp_path / "grow")
    settings = dict(seeds=[0], epochs=1, out=out, plots=False, verbose=False)
    experiments.compare(methods=["ce"], **settings)
    summary = experiments.compare(methods=["ce", "hybrid"], **settings)
    assert [e["method"] for e in summary] == ["ce", "hybrid"]
    assert all(e["step_time_ratio"] > 0 for e in summary)
    assert len(rows(out)) == 2
    with open(os.path.join(out, "step_times.json")) as f:
        (timing,) = json.load(f).values()
    assert sorted(timing["ratio_to_ce"]) == ["ce", "hybrid"]
    with open(os.path.join(out, "runs.json"), "w") as f:
        f.write("[{")  # a damaged results file gets a clear error, not a traceback
    with pytest.raises(experiments.ResultsError, match="not valid JSON"):
        experiments.compare(methods=["ce"], **settings)


def test_fashion_mnist_compares_offline_from_the_debian_package(tmp_path):
    from alllib import data

    try:
        data.source("fashion_mnist")
    except data.DatasetUnavailable:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    out = str(tmp_path / "fashion")
    result = cli("compare", "--datasets", "fashion_mnist", "--methods", "ce,hybrid", "--seeds", "1",
                 "--epochs", "1", "--no-plots", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "| fashion_mnist | hybrid |" in result.stdout
    assert "an MLP with two hidden layers of 128 units" in result.stdout
    assert "digits test set" not in result.stdout
    accuracy = {r["method"]: r["accuracy"] for r in rows(out)}
    assert accuracy["ce"] > 0.75 and accuracy["hybrid"] > 0.6, accuracy  # one epoch of 60,000 images


def test_step_times_and_device_batches():
    """The timing helpers of the benchmarks: batches handed over as backend tensors in order,
    `repeat` times, and one time per repeat for every method, with either kind of input."""
    import numpy as np
    from keras import ops

    from alllib import data, experiments

    x, y = data.load("digits", n=48, seed=0)
    batches = experiments.device_batches((x.reshape(3, 16, *x.shape[1:]), y.reshape(3, 16)))
    seen = list(batches(repeat=2))
    assert len(seen) == 6 and all(len(b) == 2 for b in seen)
    np.testing.assert_array_equal(ops.convert_to_numpy(seen[4][1]), y[16:32])
    assert not isinstance(seen[0][0], np.ndarray)  # already a backend tensor
    for on_device in (False, True):
        seconds = experiments.step_times({"ce": {"kind": "ce"}, "learner": {}}, x, y, 10,
                                         batch_size=16, steps=2, repeats=3, on_device=on_device)
        assert set(seconds) == {"ce", "learner"}
        assert all(t.shape == (3,) and (t > 0).all() for t in seconds.values())


def test_a_saved_model_loads_in_a_fresh_session(tmp_path):
    """`import alllib` defers the model classes, so Keras's loader alone cannot find them in a new
    process; `alllib.load_model` can."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    path = str(tmp_path / "gan.keras")
    save = ("import alllib\nfrom alllib import nets\n"
            "gan = alllib.GAN(nets.mlp_generator(2, width=8), nets.mlp_discriminator(width=8), 2, seed=0)\n"
            "gan.compile(d_optimizer='adam', g_optimizer='adam', loss='hinge')\n"
            f"gan.save({path!r})")
    load = ("import sys, keras, alllib\n"
            "try:\n    keras.saving.load_model(sys.argv[1])\nexcept Exception as error:\n"
            "    print('keras alone:', 'GAN' in str(error))\n"
            "gan = alllib.load_model(sys.argv[1], safe_mode=True)\n"
            "print(type(gan).__name__, gan.loss_name, gan.generate(3, seed=0).shape)")
    for script, args in ((save, []), (load, [path])):
        result = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["keras alone: True", "GAN hinge (3, 2)"], result.stdout
