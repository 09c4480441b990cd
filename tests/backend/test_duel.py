"""alllib.Duel with more than two players, on the backend in KERAS_BACKEND: the README's
three-player example runs as printed, every player moves only itself and as often as the round
says, a frozen player never moves, and saving, loading and continuing changes nothing."""

import pathlib
import re

import numpy as np
import pytest

import keras
from keras import ops

import alllib
from alllib import Duel, Player, losses, nets
from test_reliability import assert_same_arrays

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def readme_example():
    """The first Python block of the README's "Writing your own duel" section."""
    section = README.read_text().split("### Writing your own duel", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


EXAMPLE = {}
exec(compile(readme_example(), "README.md", "exec"), EXAMPLE)  # trains once, as printed
TagTeam = EXAMPLE["TagTeam"]
x = EXAMPLE["x"][:1024]


def test_the_readme_example_trains_and_logs_every_player():
    history = EXAMPLE["history"].history
    assert sorted(history) == sorted(["loss", "d_loss", "g1_loss", "g2_loss", "d_grad_norm",
                                      "g1_grad_norm", "g2_grad_norm"])
    assert all(np.isfinite(v).all() for v in history.values())
    np.testing.assert_allclose(
        history["loss"], np.sum([history[k] for k in ("d_loss", "g1_loss", "g2_loss")], 0),
        rtol=1e-5)


@keras.saving.register_keras_serializable(package="test_duel")
class Refereed(TagTeam):
    """TagTeam plus a frozen fourth player, whose samples the discriminator also sees as fakes,
    and `d_steps` discriminator moves per round."""

    def __init__(self, first, second, discriminator, referee, latent_dim, seed=None, **kwargs):
        players = [Player("discriminator", discriminator, "d"), Player("first", first, "g1"),
                   Player("second", second, "g2"), Player("referee", referee, "r", trains=False)]
        Duel.__init__(self, players, seed=seed, **kwargs)
        self.latent_dim = latent_dim

    def play_round(self, real):
        n = ops.shape(real)[0] // 2
        for _ in range(self.d_steps):
            fake = ops.stop_gradient(ops.concatenate([
                self.first(self.noise(n)), self.second(self.noise(n)), self.referee(self.noise(n))]))
            self.move("discriminator", lambda: (self.discriminator_loss(
                self.discriminator(real, training=True), self.discriminator(fake, training=True)), ()))
        self.move("first", lambda: self.fool(self.first, n))
        self.move("second", lambda: self.fool(self.second, n))
        return {}


def dropout_discriminator():
    points = keras.Input((2,))
    hidden = keras.layers.Dropout(0.5)(keras.layers.Dense(8, activation="relu")(points))
    return keras.Model(points, keras.layers.Dense(1)(hidden), name="discriminator")


def refereed(learning_rates=(1e-2, 1e-2, 1e-2), dropout=False, **compile_args):
    keras.utils.set_random_seed(0)
    discriminator = dropout_discriminator() if dropout else nets.mlp_discriminator(width=8)
    model = Refereed(nets.mlp_generator(2, width=8, name="first"),
                     nets.mlp_generator(2, width=8, name="second"),
                     discriminator, nets.mlp_generator(2, width=8, name="ref"),
                     latent_dim=2, seed=1)
    d, g1, g2 = (keras.optimizers.SGD(rate, momentum=0.5) for rate in learning_rates)
    model.compile(d_optimizer=d, g1_optimizer=g1, g2_optimizer=g2, **compile_args)
    return model


def weights(model):
    return {p.name: [np.array(w) for w in p.network.weights] for p in model.players}


def test_each_player_moves_as_often_as_the_round_says_and_a_frozen_one_never():
    model = refereed(d_steps=3)
    assert [p.name for p in model.moving_players] == ["discriminator", "first", "second"]
    before = weights(model)
    model.fit(x[:512], batch_size=128, epochs=2, verbose=0, shuffle=False)  # 8 rounds
    after = weights(model)
    counts = {p.name: int(ops.convert_to_numpy(p.optimizer.iterations))
              for p in model.moving_players}
    assert counts == {"discriminator": 24, "first": 8, "second": 8}
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 8  # rounds
    for name in ("discriminator", "first", "second"):
        assert any(not np.array_equal(a, b) for a, b in zip(before[name], after[name])), name
    for a, b in zip(before["referee"], after["referee"]):
        np.testing.assert_array_equal(a, b)
    assert model.referee.trainable  # frozen by the duel, not by switching the network off
    with pytest.raises(TypeError, match="`g2_optimizer` \\(the second's\\)"):
        Refereed.from_config(model.get_config()).compile(d_optimizer="adam", g1_optimizer="adam")


@pytest.mark.parametrize("mover", ["discriminator", "first", "second"])
def test_a_players_move_changes_only_that_player(mover):
    """Only `mover`'s optimizer has a learning rate; any other player's weights that change
    were moved by someone else's move."""
    order = ["discriminator", "first", "second"]
    model = refereed(tuple(1e-2 if name == mover else 0.0 for name in order))
    before = weights(model)
    model.fit(x[:256], batch_size=128, epochs=1, verbose=0, shuffle=False)
    after = weights(model)
    for name in [*order, "referee"]:
        same = all(np.array_equal(a, b) for a, b in zip(before[name], after[name]))
        assert same == (name != mover), name


@pytest.mark.parametrize("dropout", [False, True], ids=["plain", "dropout"])
def test_continuing_after_a_reload_equals_never_stopping(tmp_path, dropout):
    """Also with a Dropout layer, whose random stream Keras does not save by itself."""
    fit = lambda model, epochs: model.fit(x, batch_size=128, epochs=epochs, verbose=0,
                                          shuffle=False)
    stopped = refereed(dropout=dropout, d_steps=2)
    fit(stopped, 1)
    stopped.save(tmp_path / "refereed.keras")
    reloaded = keras.saving.load_model(tmp_path / "refereed.keras", safe_mode=True)
    assert isinstance(reloaded, Refereed) and reloaded.d_steps == 2
    fit(reloaded, 1)
    never_stopped = refereed(dropout=dropout, d_steps=2)
    fit(never_stopped, 2)
    state = lambda m: [np.array(v) for v in m.weights + m.optimizer.variables + m.random_states()]
    assert_same_arrays(state(reloaded), state(never_stopped))


def test_losses_and_penalties_may_be_callables():
    """An `AdversarialLoss` of one's own and a penalty function, in place of names."""
    doubled = losses.AdversarialLoss(  # twice the least-squares game: Adam moves the same way
        discriminator=lambda real, fake: ops.mean(ops.square(real - 1)) + ops.mean(ops.square(fake)),
        generator=lambda fake: ops.mean(ops.square(fake - 1)), logistic=False, threshold=0.5)
    calls = []

    def penalty(score_fn, real, fake, seed=None):
        calls.append(seed)
        return ops.mean(ops.square(score_fn(real)))

    def fit(**compile_args):
        keras.utils.set_random_seed(0)
        gan = alllib.GAN(nets.mlp_generator(2, width=8), nets.mlp_discriminator(width=8), 2)
        gan.compile(d_optimizer="adam", g_optimizer="adam", **compile_args)
        return gan.fit(x[:256], batch_size=128, epochs=1, verbose=0, shuffle=False).history

    named, own = fit(loss="least_squares"), fit(loss=doubled)
    assert own["g_loss"][0] == pytest.approx(2 * named["g_loss"][0], rel=1e-3)
    assert own["d_loss"][0] == pytest.approx(2 * named["d_loss"][0], rel=1e-3)
    penalized = fit(loss=doubled, penalty=penalty, penalty_weight=0.1)
    assert calls and calls[0] is not None  # called with the model's noise stream
    assert penalized["d_loss"][0] != pytest.approx(own["d_loss"][0], rel=1e-3)


@keras.saving.register_keras_serializable(package="test_duel")
class Scored(TagTeam):
    """TagTeam with a held-out measure: how often the discriminator calls real samples real."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._trackers["real_called_real"] = keras.metrics.Mean(name="real_called_real")

    def evaluate_batch(self, real):
        called = ops.cast(self.discriminator(real, training=False) > 0, "float32")
        tracker = self._trackers["real_called_real"]
        tracker.update_state(called)
        return {"real_called_real": tracker.result()}


def test_a_duel_without_a_held_out_measure_refuses_evaluation_and_keeps_its_weights():
    """Before Duel owned test_step, Keras's default ran here: "no call() method", and on JAX the
    trained weights were wiped by the failed trace."""
    team = EXAMPLE["team"]
    flat = lambda m: [w for ws in weights(m).values() for w in ws]
    before = flat(team)
    with pytest.raises(TypeError, match=r"TagTeam has no `evaluate`.*evaluate_batch"):
        team.evaluate(x, verbose=0)
    with pytest.raises(ValueError, match=r"TagTeam.fit\(\) takes no `validation_data`.*"
                                         r"evaluate_batch"):
        team.fit(x, validation_data=x[:128], epochs=1, verbose=0)
    assert len(before) == sum(len(p.network.weights) for p in team.players) > 0
    assert_same_arrays(flat(team), before)


def test_a_duel_with_a_held_out_measure_evaluates_it_and_validates_with_it():
    team = Scored(nets.mlp_generator(2, width=8, name="first"),
                  nets.mlp_generator(2, width=8, name="second"), nets.mlp_discriminator(width=8),
                  latent_dim=2, seed=0)
    team.compile(d_optimizer="adam", g1_optimizer="adam", g2_optimizer="adam")
    history = team.fit(x[:512], batch_size=128, epochs=1, verbose=0,
                       validation_data=x[512:768]).history
    scores = np.asarray(team.discriminator.predict(x[:256], verbose=0)).ravel()
    measured = team.evaluate(x[:256], batch_size=256, verbose=0, return_dict=True)
    assert measured["real_called_real"] == pytest.approx(np.mean(scores > 0), abs=1e-6)
    assert 0 <= history["val_real_called_real"][0] <= 1
