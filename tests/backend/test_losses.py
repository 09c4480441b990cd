"""Adversarial losses and penalties against their formulas, on the backend in KERAS_BACKEND."""

import numpy as np
import pytest

import keras
from keras import layers, ops

import alllib
from alllib import losses, nets

sigmoid = lambda s: 1 / (1 + np.exp(-s))

# name -> (discriminator loss of (real, fake), generator loss of fake), in float64 NumPy
FORMULAS = {
    "non_saturating": (
        lambda r, f: 0.5 * (-np.log(sigmoid(r)).mean() - np.log(1 - sigmoid(f)).mean()),
        lambda f: -np.log(sigmoid(f)).mean(),
    ),
    "minimax": (
        lambda r, f: 0.5 * (-np.log(sigmoid(r)).mean() - np.log(1 - sigmoid(f)).mean()),
        lambda f: np.log(1 - sigmoid(f)).mean(),
    ),
    "wasserstein": (lambda r, f: f.mean() - r.mean(), lambda f: -f.mean()),
    "hinge": (
        lambda r, f: np.maximum(0, 1 - r).mean() + np.maximum(0, 1 + f).mean(),
        lambda f: -f.mean(),
    ),
    "least_squares": (
        lambda r, f: 0.5 * (((r - 1) ** 2).mean() + (f**2).mean()),
        lambda f: 0.5 * ((f - 1) ** 2).mean(),
    ),
}


def test_every_loss_has_a_formula_here():
    assert sorted(FORMULAS) == sorted(losses.LOSSES)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_losses_match_their_formulas(name):
    real = np.array([[1.5], [0.2], [-0.7]], dtype="float32")
    fake = np.array([[-3.0], [-0.5], [0.0], [2.0]], dtype="float32")
    d_formula, g_formula = FORMULAS[name]
    d = float(ops.convert_to_numpy(losses.discriminator_loss(name, real, fake)))
    g = float(ops.convert_to_numpy(losses.generator_loss(name, fake)))
    assert d == pytest.approx(d_formula(real.astype("float64"), fake.astype("float64")), rel=1e-5)
    assert g == pytest.approx(g_formula(fake.astype("float64")), rel=1e-5)


def test_one_sided_label_smoothing_matches_cross_entropy_with_target_one_minus_s():
    real = np.array([[1.5], [0.2], [-0.7]], dtype="float32")
    fake = np.array([[-3.0], [0.0]], dtype="float32")
    r, f, s = real.astype("float64"), fake.astype("float64"), 0.2
    expected = 0.5 * (-((1 - s) * np.log(sigmoid(r)) + s * np.log(1 - sigmoid(r))).mean()
                      - np.log(1 - sigmoid(f)).mean())
    got = float(ops.convert_to_numpy(losses.discriminator_loss("non_saturating", real, fake, s)))
    assert got == pytest.approx(expected, rel=1e-5)


def linear_critic(w):
    """D(x) = w . x: its input gradient is w everywhere, so both penalties have closed forms."""
    critic = keras.Sequential([keras.Input((len(w),)), layers.Dense(1, use_bias=False)])
    critic.set_weights([np.asarray(w, "float32").reshape(-1, 1)])
    return critic


@pytest.mark.parametrize("w", [[0.3, -0.4], [3.0, 4.0]])
def test_penalties_have_their_closed_form_on_a_linear_critic(w):
    critic = linear_critic(w)
    rng = np.random.default_rng(0)
    real, fake = (rng.standard_normal((8, 2)).astype("float32") for _ in range(2))
    norm = np.linalg.norm(w)
    r1 = float(ops.convert_to_numpy(losses.penalty("r1", critic, real, fake)))
    gp = float(ops.convert_to_numpy(losses.penalty("gradient_penalty", critic, real, fake, seed=1)))
    assert r1 == pytest.approx(0.5 * norm**2, rel=1e-5)
    assert gp == pytest.approx((norm - 1) ** 2, rel=1e-4)


@pytest.mark.parametrize(
    "name, from_norms",
    [("r1", lambda n: 0.5 * (n**2).mean()), ("gradient_penalty", lambda n: ((n - 1) ** 2).mean())],
)
def test_penalties_match_finite_differences_on_a_small_mlp(name, from_norms):
    keras.utils.set_random_seed(0)
    critic = nets.mlp_discriminator(input_dim=3, width=8, depth=2)
    points = np.random.default_rng(1).standard_normal((5, 3))
    f = lambda x: ops.convert_to_numpy(critic(x.astype("float32"))).astype("float64")[:, 0]
    h = 1e-3
    grads = np.stack([(f(points + h * e) - f(points - h * e)) / (2 * h) for e in np.eye(3)], 1)
    expected = from_norms(np.linalg.norm(grads, axis=1))
    # real == fake: every gradient-penalty interpolate is that point, whatever the uniform draw
    p = points.astype("float32")
    got = float(ops.convert_to_numpy(losses.penalty(name, critic, p, p, seed=0)))
    assert got == pytest.approx(expected, rel=1e-2)


def test_penalty_gradients_reach_the_discriminator_weights():
    critic = linear_critic([3.0, 4.0])
    real = np.ones((4, 2), "float32")
    loss_fn = lambda: (losses.penalty("r1", critic, real, None), ())
    _, _, grads = alllib.backend.gradients(loss_fn, critic.trainable_variables)
    # d/dw of 0.5 ||w||^2 is w itself
    np.testing.assert_allclose(ops.convert_to_numpy(grads[0])[:, 0], [3.0, 4.0], rtol=1e-5)


def test_bad_names_are_explained():
    with pytest.raises(ValueError, match="Unknown adversarial loss 'wgan'.*hinge"):
        losses.get("wgan")
    with pytest.raises(ValueError, match="Unknown penalty 'gp'.*gradient_penalty"):
        losses.get_penalty("gp")
    gan = alllib.GAN(alllib.nets.mlp_generator(2), alllib.nets.mlp_discriminator(), 2)
    with pytest.raises(ValueError, match="penalty_weight"):
        gan.compile(d_optimizer="adam", g_optimizer="adam", penalty="r1", penalty_weight=-1.0)
