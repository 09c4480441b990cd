"""alllib.GAN on the backend in KERAS_BACKEND (run once per backend by tests/test_backends.py)."""

import importlib.util

import numpy as np
import pytest

import keras
from keras import layers, ops

import alllib
from alllib import data, metrics, nets

LATENT = 4


def ring_batch(n=512, seed=0):
    return data.load("ring", n=n, seed=seed)[0]


def make_gan(seed=0, d_optimizer=None, g_optimizer=None, batchnorm=False, **compile_args):
    keras.utils.set_random_seed(seed)
    if batchnorm:
        generator = keras.Sequential(
            [keras.Input((LATENT,)), layers.Dense(16), layers.BatchNormalization(),
             layers.ReLU(), layers.Dense(2)], name="generator")
        discriminator = keras.Sequential(
            [keras.Input((2,)), layers.Dense(16), layers.BatchNormalization(),
             layers.ReLU(), layers.Dense(1)], name="discriminator")
    else:
        generator = nets.mlp_generator(LATENT, width=16)
        discriminator = nets.mlp_discriminator(width=16)
    gan = alllib.GAN(generator, discriminator, LATENT)  # its noise seed comes from set_random_seed
    gan.compile(
        d_optimizer=d_optimizer or keras.optimizers.Adam(1e-3),
        g_optimizer=g_optimizer or keras.optimizers.Adam(1e-3),
        **compile_args,
    )
    return gan


def weights(network):
    return [np.array(w) for w in network.get_weights()]


def changed(before, after):
    return any(not np.array_equal(b, a) for b, a in zip(before, after))


@pytest.mark.parametrize("still", ["generator", "discriminator"])
def test_each_step_moves_only_its_own_player(still):
    # The still player's own optimizer cannot move it (learning rate 0), so any change to its
    # weights would have to leak from the other player's step.
    moving = "discriminator" if still == "generator" else "generator"
    gan = make_gan(**{f"{still[0]}_optimizer": keras.optimizers.SGD(0.0)})
    before = {name: weights(getattr(gan, name)) for name in (still, moving)}
    gan.fit(ring_batch(), batch_size=64, epochs=1, verbose=0)
    assert not changed(before[still], weights(getattr(gan, still)))
    assert changed(before[moving], weights(getattr(gan, moving)))


def test_both_optimizers_advance_their_own_state():
    gan = make_gan()
    x = ring_batch(512)
    gan.fit(x, batch_size=64, epochs=2, verbose=0)  # 16 steps
    gan.fit(x, batch_size=128, epochs=1, verbose=0)  # 4 more: state carries across fits
    for optimizer in (gan.d_optimizer, gan.g_optimizer):
        assert int(ops.convert_to_numpy(optimizer.iterations)) == 20
        # Adam's moments must have moved too (on JAX they silently stay at zero when the
        # optimizer's state is not threaded through the jitted step).
        moments = [np.abs(ops.convert_to_numpy(v)).sum() for v in optimizer.variables
                   if "momentum" in v.path or "velocity" in v.path]
        assert moments and all(m > 0 for m in moments), optimizer.name
    assert int(ops.convert_to_numpy(gan.optimizer.iterations)) == 20


def test_batchnorm_statistics_update():
    gan = make_gan(batchnorm=True)
    stats = lambda: [ops.convert_to_numpy(v) for v in gan.non_trainable_variables if "moving" in v.path]
    before = stats()
    assert len(before) == 4  # mean and variance, generator and discriminator
    gan.fit(ring_batch(), batch_size=64, epochs=1, verbose=0)
    assert all(not np.allclose(b, a) for b, a in zip(before, stats()))


def test_a_seed_makes_training_repeatable():
    def train(seed):
        gan = make_gan(seed=seed)
        gan.fit(ring_batch(), batch_size=64, epochs=1, verbose=0, shuffle=True)
        return weights(gan.generator) + weights(gan.discriminator)

    first, again, other = train(1), train(1), train(2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert changed(first, other)


GAN_LOGS = ("loss", "d_loss", "g_loss", "d_acc", "d_real", "d_fake", "d_grad_norm", "g_grad_norm")


def test_logs_and_generate():
    gan = make_gan()
    history = gan.fit(ring_batch(), batch_size=64, epochs=2, verbose=0)
    assert sorted(history.history) == sorted(GAN_LOGS)
    total = np.add(history.history["d_loss"], history.history["g_loss"])
    np.testing.assert_allclose(history.history["loss"], total, rtol=1e-5)
    assert all(v > 0 for v in history.history["g_grad_norm"] + history.history["d_grad_norm"])
    for key in ("d_acc", "d_real", "d_fake"):
        assert all(0.0 <= v <= 1.0 for v in history.history[key])
    a, b = gan.generate(10, seed=3), gan.generate(10, seed=3)
    assert a.shape == (10, 2) and np.array_equal(a, b)
    assert not np.array_equal(gan.generate(10), gan.generate(10))  # own stream advances


def test_accepts_labelled_tf_data():
    tf = pytest.importorskip("tensorflow")
    x, y = data.load("ring", n=256)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    gan = make_gan()
    gan.fit(dataset, epochs=1, verbose=0)
    assert int(ops.convert_to_numpy(gan.d_optimizer.iterations)) == 4


def test_sample_grid_callback(tmp_path):
    with_tensorboard = all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorboard"))
    gan = make_gan()
    monitor = alllib.callbacks.SampleGrid(
        num_samples=16, directory=str(tmp_path / "png"),
        log_dir=str(tmp_path / "tb") if with_tensorboard else None,
    )
    gan.fit(ring_batch(), batch_size=64, epochs=3, verbose=0, callbacks=[monitor])
    assert [epoch for epoch, _ in monitor.snapshots] == [1, 2, 3]
    assert all(s.shape == (16, 2) for _, s in monitor.snapshots)
    assert not np.array_equal(monitor.snapshots[0][1], monitor.snapshots[-1][1])
    assert len(list((tmp_path / "png").glob("epoch_*.png"))) == 3
    if with_tensorboard:
        assert list((tmp_path / "tb" / "samples").glob("events.out.tfevents.*"))


def test_every_fix_trains_together():
    keras.utils.set_random_seed(0)
    gan = alllib.GAN(nets.mlp_generator(LATENT, width=16),
                     nets.mlp_discriminator(width=16, spectral_norm=True, minibatch_std=True),
                     LATENT)
    gan.compile(d_optimizer=keras.optimizers.Adam(4e-4), g_optimizer=keras.optimizers.Adam(1e-4),
                penalty="r1", penalty_weight=1.0, d_steps=2, label_smoothing=0.1,
                instance_noise=0.3, instance_noise_steps=6)
    history = gan.fit(ring_batch(), batch_size=64, epochs=1, verbose=0)  # 8 rounds
    assert all(np.isfinite(v[0]) for v in history.history.values())
    assert int(ops.convert_to_numpy(gan.d_optimizer.iterations)) == 16
    stds = [float(ops.convert_to_numpy(gan.instance_noise_std(t))) for t in (0, 3, 6, 100)]
    np.testing.assert_allclose(stds, [0.3, 0.15, 0.0, 0.0], atol=1e-7)


def test_minibatch_std_feature():
    x = np.random.default_rng(0).standard_normal((6, 4, 4, 3)).astype("float32")
    out = ops.convert_to_numpy(nets.MinibatchStdDev()(x))
    assert out.shape == (6, 4, 4, 4)
    np.testing.assert_allclose(out[..., :3], x)
    np.testing.assert_allclose(out[..., 3], np.sqrt(x.var(axis=0) + 1e-8).mean(), rtol=1e-5)


def test_every_ablation_row_trains():
    """Each configuration of notebook 02's table builds as configured and trains: the generator
    takes exactly the budgeted steps, the discriminator `d_steps` times as many, with its
    learning-rate schedule stretched over all of them, several steps per backend call. Every
    row in the TensorFlow suite; in the others, the two rows that hold every backend-specific
    ingredient (several discriminator steps per round and per backend call, both penalties,
    minibatch standard deviation), as each ingredient has tests of its own on every backend."""
    from alllib import ablation, backend

    assert backend.steps_per_execution(5) == (1 if keras.backend.backend() == "torch" else 5)
    rows = (ablation.GAN_FIXES if keras.backend.backend() == "tensorflow"
            else {name: ablation.GAN_FIXES[name] for name in ("wgan_gp", "r1_minibatch_std")})
    for name, config in rows.items():
        settings = {**ablation.GAN_DEFAULTS, **config}
        row, gan = ablation.train_on_mixture(config, "grid", seed=0, steps=10, batch_size=32,
                                             samples=200, steps_per_execution=5)
        assert gan.steps_per_execution == backend.steps_per_execution(5) > 0, name
        g_steps = int(ops.convert_to_numpy(gan.g_optimizer.iterations))
        d_steps = int(ops.convert_to_numpy(gan.d_optimizer.iterations))
        assert (g_steps, d_steps) == (10, 10 * settings["d_steps"]), name
        assert gan.d_optimizer._learning_rate.decay_steps == 10 * settings["d_steps"], name
        assert gan.g_optimizer._learning_rate.decay_steps == 10, name
        assert (gan.loss_name, gan.penalty) == (settings["loss"], settings["penalty"]), name
        assert float(gan.d_optimizer.beta_1) == settings["beta_1"], name
        layer_types = {type(layer) for layer in gan.discriminator.layers}
        assert (nets.SpectralDense in layer_types) == settings["spectral_norm"], name
        assert (nets.MinibatchStdDev in layer_types) == settings["minibatch_std"], name
        assert bool(gan.instance_noise) == bool(settings["instance_noise"]), name
        assert set(row) == {"seed", "modes", "high_quality", "success", "seconds"}, name
    with pytest.raises(ValueError, match="Unknown settings.*'learning_rate'"):
        ablation.build_gan({"learning_rate": 1e-3}, steps=10, seed=0)
    with pytest.raises(TypeError, match="`config` must be a dict"):
        ablation.build_gan("r1", steps=10, seed=0)
    with pytest.raises(ValueError, match="`steps` must be below 100 or a multiple of 100"):
        ablation.train_on_mixture({}, "ring", seed=0, steps=150)
    with pytest.raises(ValueError, match="Configuration 'bad' on 'grid'.*`d_steps`"):
        ablation.ablation({"bad": {"d_steps": 0}}, ["grid"], seeds=[0], steps=10)


def test_head_start_trains_only_the_discriminator_to_win():
    from alllib import ablation

    gan = ablation.build_gan({"d_head_start": 40}, steps=10, seed=0)
    real = ring_batch(256)
    generator_before = weights(gan.generator)
    ablation.head_start(gan, real, steps=40, batch_size=64)
    assert not changed(generator_before, weights(gan.generator))
    assert metrics.logit_accuracy(gan.discriminator, ring_batch(256, seed=1),
                                   gan.generate(256, seed=3)) > 0.95
    hinge = ablation.build_gan({"loss": "hinge"}, steps=10, seed=0)
    with pytest.raises(ValueError, match="logistic loss"):
        ablation.head_start(hinge, real, steps=5)


def test_fresh_discriminator_separates_what_the_training_one_cannot():
    """An untrained generator's points sit near the origin, far from the ring: a fresh
    discriminator trained on them tells the two apart perfectly, while the untrained training
    discriminator is at chance. `DiscriminatorGap` records both, per check."""
    from alllib import callbacks

    gan = make_gan(seed=0)
    real_train, real_test = ring_batch(256, seed=0), ring_batch(256, seed=1)
    fake_test = gan.generate(256, seed=5)
    fresh = metrics.fresh_discriminator(gan.discriminator, real_train, gan.generate(256, seed=4),
                                         epochs=30, batch_size=32)
    assert fresh is not gan.discriminator
    assert metrics.logit_accuracy(fresh, real_test, fake_test) > 0.95
    # The control starts from the training discriminator's weights: untrained, it scores the same.
    for fine_tune, same in ((True, True), (False, False)):
        copy = metrics.fresh_discriminator(gan.discriminator, real_train, fake_test, epochs=0,
                                           fine_tune=fine_tune)
        scores = [keras.ops.convert_to_numpy(d(real_test)) for d in (copy, gan.discriminator)]
        assert np.allclose(*scores) == same
    # A discriminator whose score is the first coordinate: real points right of 0 count as real.
    first = keras.Sequential([keras.Input((2,)), layers.Lambda(lambda p: p[:, :1])])
    expected = 0.5 * ((real_test[:, 0] > 0.5).mean() + (fake_test[:, 0] < 0.5).mean())
    assert metrics.logit_accuracy(first, real_test, fake_test, threshold=0.5) == pytest.approx(expected)

    gap = callbacks.DiscriminatorGap(real_train, real_test, every=2, epochs=5)
    gan.fit(ring_batch(64), batch_size=32, epochs=4, verbose=0, callbacks=[gap])
    assert [epoch for epoch, _, _ in gap.records] == [2, 4]
    assert all(0.0 <= t <= 1.0 and 0.0 <= f <= 1.0 for _, t, f in gap.records)
    assert gap.fresh.count_params() == gan.discriminator.count_params()
    with pytest.raises(ValueError, match="`every`"):
        callbacks.DiscriminatorGap(real_train, real_test, every=0)
    batch_dependent = nets.mlp_discriminator(width=8, minibatch_std=True)
    with pytest.raises(ValueError, match="MinibatchStdDev"):
        metrics.fresh_discriminator(batch_dependent, real_train, real_test)


def test_value_surface_draws_the_discriminators_probability():
    """Pixel (row i, column j) is D's probability at (x_j, y_i), with y growing upwards."""
    import matplotlib

    matplotlib.use("Agg")
    from alllib import plots

    gan = make_gan(seed=0)
    real = ring_batch(100)
    resolution = 12
    ax = plots.value_surface(gan, real, resolution=resolution, samples=50)
    image = ax.images[0]
    values = image.get_array()
    assert values.shape == (resolution, resolution) and image.origin == "lower"
    left, right, bottom, top = image.get_extent()
    half_x, half_y = (right - left) / resolution / 2, (top - bottom) / resolution / 2
    xs = np.linspace(left + half_x, right - half_x, resolution)
    ys = np.linspace(bottom + half_y, top - half_y, resolution)
    for i, j in ((0, 0), (0, -1), (-1, 0), (5, 8)):
        point = np.array([[xs[j], ys[i]]], "float32")
        expected = 1 / (1 + np.exp(-ops.convert_to_numpy(gan.discriminator(point))[0, 0]))
        # rel 2e-3: a GPU multiplies float32 matrices in TF32 (10-bit mantissa), and a batch
        # and a single point may take different kernels; a flipped axis is off by far more
        assert values[i, j] == pytest.approx(expected, rel=2e-3, abs=1e-6), (i, j)
    gan.discriminator = nets.mlp_discriminator(width=8, minibatch_std=True)
    with pytest.raises(ValueError, match="MinibatchStdDev"):
        plots.value_surface(gan, real)


def test_epoch_progress_prints_plain_lines(capsys):
    gan = make_gan()
    gan.fit(ring_batch(256), batch_size=64, epochs=3, verbose=0,
            callbacks=[alllib.callbacks.EpochProgress(interval=0)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "left" in lines[0] and "left" not in lines[-1] and "d_loss" in lines[-1]
    assert not any("\x1b" in line for line in lines)  # no terminal colour codes
    gan.fit(ring_batch(256), batch_size=64, epochs=5, initial_epoch=3, verbose=0,
            callbacks=[alllib.callbacks.EpochProgress(interval=1000)])  # resuming
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["epoch 4/5", "epoch 5/5"]


def test_spectral_conv_normalises_its_kernel_and_a_dcgan_with_it_trains(tmp_path):
    layer = nets.SpectralConv2D(3, 3, strides=2, padding="same")
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype("float32")
    for _ in range(30):
        layer(x, training=True)  # the power iteration converges
    kernel = ops.convert_to_numpy(layer.kernel)
    sigma = np.linalg.svd(kernel.reshape(-1, 3), compute_uv=False)[0]
    expected = ops.conv(x, kernel / sigma, strides=2, padding="same") + layer.bias
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), ops.convert_to_numpy(expected),
                               rtol=1e-4, atol=1e-5)
    assert layer.compute_output_shape((None, 6, 6, 2)) == (None, 3, 3, 3)
    assert nets.SpectralConv2D(3, 3).compute_output_shape((None, 6, 6, 2)) == (None, 4, 4, 3)

    keras.utils.set_random_seed(0)
    gan = alllib.GAN(nets.dcgan_generator(8, (8, 8, 1), width=8),
                     nets.dcgan_discriminator((8, 8, 1), width=8, spectral_norm=True), 8, seed=0)
    gan.compile(d_optimizer="adam", g_optimizer="adam", loss="hinge")
    u_before = [np.array(v) for v in gan.discriminator.non_trainable_weights]
    assert len(u_before) == 3  # two convolutions and the head
    history = gan.fit(data.load("digits")[0][:256], batch_size=64, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert all(not np.allclose(a, np.array(b))
               for a, b in zip(u_before, gan.discriminator.non_trainable_weights))
    gan.save(tmp_path / "gan.keras")
    reloaded = keras.saving.load_model(tmp_path / "gan.keras")
    images = data.load("digits")[0][:8]
    np.testing.assert_allclose(ops.convert_to_numpy(reloaded.discriminator(images)),
                               ops.convert_to_numpy(gan.discriminator(images)), rtol=1e-5, atol=1e-6)


def test_adam_step_predicts_the_step_adam_takes():
    """Including a tiny gradient, far below epsilon, where Adam's step shrinks with it."""
    variables = [keras.Variable(np.ones((3, 2), "float32")), keras.Variable(np.zeros(4, "float32"))]
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5))
    optimizer.build(variables)
    rng = np.random.default_rng(0)
    for scale in (1.0, 1.0, 1e-12):
        grads = [keras.ops.convert_to_tensor(scale * rng.standard_normal(v.shape).astype("float32"))
                 for v in variables]
        report = metrics.adam_step(optimizer, grads, variables)
        before = np.concatenate([np.array(v).ravel() for v in variables])
        optimizer.apply(grads, variables)
        after = np.concatenate([np.array(v).ravel() for v in variables])
        np.testing.assert_allclose(after - before, report["step"], rtol=1e-4, atol=1e-9)
    assert report["epsilon"] == 1e-7 and np.all(report["sqrt_v"] > 100 * np.abs(report["grad"]))
    with pytest.raises(TypeError, match="keras.optimizers.Adam without amsgrad"):
        metrics.adam_step(keras.optimizers.SGD(), grads, variables)


def test_generator_adam_step_reads_the_gradient_and_the_slope_without_moving_the_gan():
    """Linear players: the score is s = w . (A z + b) + c, so the slope at every sample is |w|
    and the non-saturating loss mean(softplus(-s)) has d/db = -mean(sigmoid(-s)) w."""
    keras.utils.set_random_seed(0)
    generator = keras.Sequential([keras.Input((LATENT,)), layers.Dense(2)], name="generator")
    discriminator = keras.Sequential([keras.Input((2,)), layers.Dense(1)], name="discriminator")
    gan = alllib.GAN(generator, discriminator, LATENT, seed=0)
    gan.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3))
    gan.fit(ring_batch(64), batch_size=32, epochs=1, verbose=0)  # Adam has a state to read
    before, iterations = weights(gan), int(ops.convert_to_numpy(gan.g_optimizer.iterations))
    report = metrics.generator_adam_step(gan, n=50, seed=4)
    assert not changed(before, weights(gan))
    assert int(ops.convert_to_numpy(gan.g_optimizer.iterations)) == iterations
    kernel, bias = (np.asarray(ops.convert_to_numpy(v), "float64") for v in generator.weights)
    w, c = (np.asarray(ops.convert_to_numpy(v), "float64") for v in discriminator.weights)
    noise = np.asarray(ops.convert_to_numpy(keras.random.normal((50, LATENT), seed=4)), "float64")
    scores = (noise @ kernel + bias) @ w + c
    np.testing.assert_allclose(report["slope"], np.full(50, np.linalg.norm(w)), rtol=1e-5)
    expected = -np.mean(1 / (1 + np.exp(scores))) * w.ravel()
    np.testing.assert_allclose(report["grad"][-2:], expected, rtol=1e-4, atol=1e-7)
    assert len(report["grad"]) == len(report["step"]) == generator.count_params()
    with pytest.raises(TypeError, match="`gan` must be an unconditional alllib.GAN"):
        metrics.generator_adam_step(generator)
    gan.compile(d_optimizer="adam", g_optimizer=keras.optimizers.SGD())
    with pytest.raises(TypeError, match="`gan.g_optimizer` must be a keras.optimizers.Adam"):
        metrics.generator_adam_step(gan)
    batchwise = alllib.GAN(generator, nets.mlp_discriminator(2, width=8, minibatch_std=True), LATENT)
    with pytest.raises(ValueError, match="looks across the batch"):
        metrics.generator_adam_step(batchwise)


def test_build_gan_for_images_uses_dcgan_players_with_the_configured_fixes():
    from alllib import ablation

    gan = ablation.build_gan({"loss": "hinge", "spectral_norm": True, "d_learning_rate": 1e-4},
                             steps=4, seed=0, image_shape=(8, 8, 1))
    assert {nets.SpectralConv2D, nets.SpectralDense} <= {type(l) for l in gan.discriminator.layers}
    assert gan.latent_dim == ablation.IMAGE_LATENT_DIM
    gan.fit(data.load("digits")[0][:64], batch_size=16, epochs=1, verbose=0)
    assert int(ops.convert_to_numpy(gan.g_optimizer.iterations)) == 4
    assert gan.generate(3, seed=0).shape == (3, 8, 8, 1)


def test_logit_auc_ranks_real_above_fake_without_a_threshold():
    """A linear score x0 + 100: every score is positive, so accuracy at 0 is 0.5 whatever the
    order, while the AUC reads the order: 1 when real outscores fake, 0 reversed, 0.5 for ties."""
    discriminator = keras.Sequential([keras.Input((2,)), layers.Dense(1)])
    discriminator.set_weights([np.array([[1.0], [0.0]], "float32"), np.array([100.0], "float32")])
    low, high = np.zeros((5, 2), "float32"), np.ones((4, 2), "float32")
    assert metrics.logit_accuracy(discriminator, high, low) == 0.5
    assert metrics.logit_auc(discriminator, high, low) == 1.0
    assert metrics.logit_auc(discriminator, low, high) == 0.0
    assert metrics.logit_auc(discriminator, low, low) == 0.5
