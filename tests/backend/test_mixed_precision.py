"""Mixed precision (bfloat16 and float16 compute, float32 variables) on the backend in
KERAS_BACKEND: both models train, log float32, and under float16 each player scales its own loss."""

import numpy as np
import pytest

import keras
from keras import ops

import alllib
from alllib import nets
import test_gan
import test_label_learner
from test_gan import LATENT, changed, ring_batch, weights
from test_label_learner import blobs

LossScaleOptimizer = keras.optimizers.LossScaleOptimizer


@pytest.fixture(autouse=True)
def float32_afterwards():
    yield
    keras.mixed_precision.set_global_policy("float32")


def make_gan(policy, d_optimizer=None, g_optimizer=None, seed=0, **compile_args):
    """The suite's GAN, built under `policy`, as a user would: set it first."""
    keras.mixed_precision.set_global_policy(policy)
    return test_gan.make_gan(seed, d_optimizer, g_optimizer, **compile_args)


def make_learner(policy, d_optimizer=None, p_optimizer=None, seed=0, **compile_args):
    keras.mixed_precision.set_global_policy(policy)
    return test_label_learner.make_learner(
        seed, conditional=True, d_optimizer=d_optimizer, p_optimizer=p_optimizer, ce_weight=0.5,
        **compile_args,
    )


def players(model):
    """Each player's optimizer by player name, read through the model's own map of players."""
    return {p.name: p.optimizer for p in model.players}


def finite(arrays):
    return all(np.all(np.isfinite(a)) for a in arrays)


def value(variable):
    return float(ops.convert_to_numpy(variable))


def check_float32_logs(model, history):
    trained = [name for name in history.history if not name.startswith("val_")]
    expected = test_gan.GAN_LOGS if isinstance(model, alllib.GAN) else test_label_learner.LEARNER_LOGS
    assert sorted(trained) == sorted(expected)
    for name, values in history.history.items():
        assert np.all(np.isfinite(values)), (name, values)
    for tracker in model.metrics:
        assert keras.backend.standardize_dtype(tracker.result().dtype) == "float32", tracker.name


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("kind", ["gan", "learner"])
def test_networks_compute_in_half_precision_and_log_float32(policy, kind):
    compute = "bfloat16" if policy == "mixed_bfloat16" else "float16"
    if kind == "gan":
        model = make_gan(policy, penalty="gradient_penalty", penalty_weight=1.0)
        history = model.fit(ring_batch(256), batch_size=64, epochs=2, verbose=0)
        networks = (model.generator, model.discriminator)
        assert model.generate(5).dtype == np.float32
    else:
        model = make_learner(policy, penalty="r1", penalty_weight=1.0)
        history = model.fit(*blobs(), batch_size=60, epochs=2, verbose=0, validation_data=blobs(60))
        networks = (model.predictor, model.discriminator)
    for network in networks:
        dense = [layer for layer in network.layers if layer.weights]
        assert dense and all(layer.compute_dtype == compute for layer in dense), network.name
        assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in network.weights)
        assert finite(weights(network)), network.name
    check_float32_logs(model, history)
    # The logged losses are the unscaled ones (a float16 loss scale starts at 2 ** 15).
    for name in ("loss", "d_loss", "g_loss" if kind == "gan" else "p_loss"):
        assert all(abs(v) < 100 for v in history.history[name]), (name, history.history[name])
    scaled = [o for o in players(model).values() if isinstance(o, LossScaleOptimizer)]
    assert len(scaled) == (2 if policy == "mixed_float16" else 0)


@pytest.mark.parametrize("kind", ["gan", "learner"])
def test_float16_gives_each_player_its_own_loss_scale_and_no_second_one(kind):
    model = make_gan("mixed_float16") if kind == "gan" else make_learner("mixed_float16")
    optimizers = list(players(model).values())
    assert all(isinstance(o, LossScaleOptimizer) for o in optimizers)
    assert optimizers[0].dynamic_scale is not optimizers[1].dynamic_scale
    # Keras would wrap the compiled optimizer too; alllib compiles it without a scale of its own.
    assert not isinstance(model.optimizer, LossScaleOptimizer)
    # Both scales travel with the compiled optimizer's state (JAX threads nothing else).
    state = {id(v) for v in model.optimizer.variables}
    for o in optimizers:
        assert id(o.dynamic_scale) in state and id(o.step_counter) in state
        assert value(o.dynamic_scale) == 2.0**15
    # `auto_scale_loss=False` opts out, as in `keras.Model.compile`.
    keras.mixed_precision.set_global_policy("mixed_float16")
    gan = alllib.GAN(nets.mlp_generator(LATENT, width=8), nets.mlp_discriminator(width=8), LATENT)
    gan.compile(d_optimizer="adam", g_optimizer="adam", auto_scale_loss=False)
    assert not any(isinstance(o, LossScaleOptimizer) for o in players(gan).values())


@pytest.mark.parametrize("kind", ["gan", "learner"])
def test_an_overflowing_float16_step_is_skipped_and_the_scale_halves(kind):
    """A loss scale of 2 ** 40 overflows float16 in every backward pass: each player's step is
    skipped (weights untouched, no NaN), its scale halves and its gradient norm logs as 0, while
    the logged losses stay the unscaled, finite ones."""
    huge = lambda: LossScaleOptimizer(keras.optimizers.Adam(1e-3), initial_scale=2.0**40)
    if kind == "gan":
        model = make_gan("mixed_float16", d_optimizer=huge(), g_optimizer=huge())
        fit = lambda steps: model.fit(ring_batch(64 * steps), batch_size=64, verbose=0)
    else:
        model = make_learner("mixed_float16", d_optimizer=huge(), p_optimizer=huge())
        fit = lambda steps: model.fit(*blobs(60 * steps), batch_size=60, verbose=0)
    networks = {p.name: p.network for p in model.players}
    prefixes = {p.name: p.prefix for p in model.players}
    optimizers = players(model)
    assert all(isinstance(o.inner_optimizer, keras.optimizers.Adam) for o in optimizers.values())
    before = {name: weights(network) for name, network in networks.items()}
    history = fit(2)
    for name, network in networks.items():
        assert not changed(before[name], weights(network)), name
        optimizer = optimizers[name]
        assert value(optimizer.dynamic_scale) == 2.0**38, name  # halved once per skipped step
        assert int(ops.convert_to_numpy(optimizer.iterations)) == 0, name
        assert history.history[f"{prefixes[name]}_grad_norm"] == [0.0], name
    check_float32_logs(model, history)
    # The scale keeps halving until the gradients fit in float16; then both players train.
    history = fit(40)
    for name, network in networks.items():
        assert changed(before[name], weights(network)) and finite(weights(network)), name
        optimizer = optimizers[name]
        assert value(optimizer.dynamic_scale) < 2.0**30, name
        assert 0 < int(ops.convert_to_numpy(optimizer.iterations)) < 40, name
    check_float32_logs(model, history)


def test_float16_logs_the_unscaled_gradient_norms():
    """With a scale that does not overflow, the first round's logs match float32 training's."""
    def first_round(policy, **scale):
        wrap = (lambda o: LossScaleOptimizer(o, **scale)) if scale else (lambda o: o)
        gan = make_gan(policy, d_optimizer=wrap(keras.optimizers.SGD(1e-2)),
                       g_optimizer=wrap(keras.optimizers.SGD(1e-2)))
        return gan.fit(ring_batch(64), batch_size=64, verbose=0, shuffle=False).history

    reference = first_round("float32")
    for scale in (2.0**4, 2.0**10):
        logs = first_round("mixed_float16", initial_scale=scale)
        for name in ("d_grad_norm", "g_grad_norm", "d_loss", "g_loss"):
            np.testing.assert_allclose(logs[name], reference[name], rtol=0.05, err_msg=name)


def test_bfloat16_gan_trains_on_the_ring():
    gan = make_gan("mixed_bfloat16", seed=1)
    before = {name: weights(getattr(gan, name)) for name in ("generator", "discriminator")}
    x = ring_batch(1024, seed=1)
    history = gan.fit(x, batch_size=64, epochs=3, verbose=0)
    for name in before:
        after = weights(getattr(gan, name))
        assert changed(before[name], after) and finite(after), name
        assert all(w.dtype == np.float32 for w in after), name
    check_float32_logs(gan, history)
    assert int(ops.convert_to_numpy(gan.g_optimizer.iterations)) == 48
    assert int(ops.convert_to_numpy(gan.d_optimizer.iterations)) == 48
    # The discriminator has learned something about the ring: its loss fell below chance's.
    assert history.history["d_loss"][-1] < np.log(2), history.history["d_loss"]
    samples = gan.generate(256, seed=0)
    assert samples.dtype == np.float32 and np.all(np.isfinite(samples))


@pytest.mark.parametrize("kind", ["gan", "learner"])
def test_a_float16_model_reloads_with_its_loss_scales(kind, tmp_path):
    huge = lambda: LossScaleOptimizer(keras.optimizers.Adam(1e-3), initial_scale=2.0**40)
    if kind == "gan":
        model = make_gan("mixed_float16", d_optimizer=huge(), g_optimizer=huge())
        model.fit(ring_batch(64 * 3), batch_size=64, verbose=0)
    else:
        model = make_learner("mixed_float16", d_optimizer=huge(), p_optimizer=huge())
        model.fit(*blobs(60 * 3), batch_size=60, verbose=0)
    model.save(tmp_path / "model.keras")
    keras.mixed_precision.set_global_policy("float32")  # the saved model carries its own
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert not isinstance(reloaded.optimizer, LossScaleOptimizer)
    for name, optimizer in players(reloaded).items():
        assert isinstance(optimizer, LossScaleOptimizer), name
        assert not isinstance(optimizer.inner_optimizer, LossScaleOptimizer), name
        assert value(optimizer.dynamic_scale) == 2.0**37, name  # three skipped steps
    for saved, loaded in zip(model.optimizer.variables, reloaded.optimizer.variables):
        np.testing.assert_array_equal(np.array(saved), np.array(loaded))
