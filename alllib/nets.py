"""Small reference networks: MLPs for 2-D data, DCGAN-style convnets for images, predictors and
label-vector discriminators for adversarial label learning, and the encoders and heads of notebook
07's representations; `SpectralDense`, `SpectralConv2D`, `MinibatchStdDev`, `BatchFrequencies`."""

import keras
from keras import layers, ops


def mlp_generator(latent_dim, output_dim=2, width=128, depth=2, name="generator"):
    """Noise -> point in R^output_dim."""
    x = inputs = keras.Input((latent_dim,))
    for _ in range(depth):
        x = layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(output_dim)(x), name=name)


def mlp_discriminator(
    input_dim=2, width=128, depth=2, spectral_norm=False, minibatch_std=False,
    name="discriminator",
):
    """Point -> one logit. `spectral_norm` uses `SpectralDense` layers; `minibatch_std` gives the
    last hidden layer the batch's feature spread (`MinibatchStdDev`)."""
    dense = SpectralDense if spectral_norm else layers.Dense
    x = inputs = keras.Input((input_dim,))
    for i in range(depth):
        if minibatch_std and i == depth - 1:
            x = MinibatchStdDev()(x)
        x = dense(width, activation="relu")(x)
    return keras.Model(inputs, dense(1)(x), name=name)


def dcgan_generator(latent_dim, image_shape=(28, 28, 1), width=64, name="generator"):
    """Noise -> image in [-1, 1]: a dense projection, then two stride-2 transposed convs, so
    height and width must be divisible by 4 (28x28 MNIST, 32x32 CIFAR-10; 8x8 digits)."""
    noise = keras.Input((latent_dim,))
    return keras.Model(noise, _dcgan_upsample(noise, image_shape, width), name=name)


def conditional_dcgan_generator(latent_dim, num_classes, image_shape=(28, 28, 1), width=64,
                                name="generator"):
    """[noise, integer label] -> image: `dcgan_generator` on the noise and a label embedding."""
    noise, labels = keras.Input((latent_dim,)), keras.Input((), dtype="int32")
    embedded = layers.Embedding(num_classes, latent_dim)(labels)
    x = layers.Concatenate()([noise, embedded])
    return keras.Model([noise, labels], _dcgan_upsample(x, image_shape, width), name=name)


def _dcgan_upsample(x, image_shape, width):
    height, width_px, channels = image_shape
    if height % 4 or width_px % 4:
        raise ValueError(f"`image_shape` height and width must be divisible by 4; got {image_shape}.")
    x = layers.Dense((height // 4) * (width_px // 4) * 2 * width, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Reshape((height // 4, width_px // 4, 2 * width))(x)
    x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    return layers.Conv2DTranspose(channels, 4, strides=2, padding="same", activation="tanh")(x)


def dcgan_discriminator(image_shape=(28, 28, 1), width=64, minibatch_std=False,
                        spectral_norm=False, name="discriminator"):
    """Image -> one logit: two stride-2 convs with LeakyReLU, no BatchNorm (safe for penalties).
    `minibatch_std` appends the batch's feature spread as a channel before the second conv;
    `spectral_norm` uses `SpectralConv2D` and `SpectralDense` layers."""
    images = keras.Input(image_shape)
    features = _dcgan_features(images, width, minibatch_std, spectral_norm)
    dense = SpectralDense if spectral_norm else layers.Dense
    return keras.Model(images, dense(1)(features), name=name)


def conditional_dcgan_discriminator(image_shape, num_classes, width=64, name="discriminator"):
    """[image, integer label] -> one logit, with a projection head (Miyato and Koyama 2018):
    `dense(features) + <embedding(label), features>`, so the label asks "is this a real
    example of this class?" through the inner product rather than as one more input feature."""
    images, labels = keras.Input(image_shape), keras.Input((), dtype="int32")
    features = _dcgan_features(images, width)
    embedded = layers.Embedding(num_classes, features.shape[-1])(labels)
    projection = layers.Dot(axes=1)([embedded, features])
    logit = layers.Add()([layers.Dense(1)(features), projection])
    return keras.Model([images, labels], logit, name=name)


def dcgan_encoder(image_shape, embedding_dim=None, width=64, name="encoder"):
    """Image -> features: `dcgan_discriminator`'s two convolutions, flattened, then (with
    `embedding_dim`) a dense layer to an embedding. Notebook 07 gives every representation it
    compares this shape, so that only the training differs."""
    images = keras.Input(image_shape)
    x = _dcgan_features(images, width)
    if embedding_dim is not None:
        x = layers.Dense(embedding_dim, name="embedding")(x)
    return keras.Model(images, x, name=name)


def semi_supervised_discriminator(image_shape, num_classes, width=64, dropout=0.0,
                                  name="discriminator"):
    """Image -> [K class logits, features], for `SemiSupervisedGAN`: `dcgan_discriminator`'s
    trunk with K outputs instead of one; the flattened features are the second output, which the
    generator's feature matching compares. `dropout` before the logits regularises the
    supervised part, which sees few labels."""
    images = keras.Input(image_shape)
    features = _dcgan_features(images, width)
    logits = layers.Dense(num_classes)(layers.Dropout(dropout)(features))
    return keras.Model(images, [logits, features], name=name)


def label_matcher(embedding_dim, num_classes, name="discriminator"):
    """[embedding, integer label] -> one logit, "does this embedding match this label?", for
    `EmbeddingMatcher`: a projection head, `b(e) + <w_label, e>` (as in
    `conditional_dcgan_discriminator`). Over all labels its scores are a linear softmax
    classifier's logits (up to the shared `b(e)`)."""
    embeddings, labels = keras.Input((embedding_dim,)), keras.Input((), dtype="int32")
    projection = layers.Dot(axes=1)([layers.Embedding(num_classes, embedding_dim)(labels),
                                     embeddings])
    return keras.Model([embeddings, labels], layers.Add()([layers.Dense(1)(embeddings),
                                                           projection]), name=name)


def _dcgan_features(x, width, minibatch_std=False, spectral_norm=False):
    conv = SpectralConv2D if spectral_norm else layers.Conv2D
    x = conv(width, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU(0.2)(x)
    if minibatch_std:
        x = MinibatchStdDev()(x)
    x = conv(2 * width, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU(0.2)(x)
    return layers.Flatten(name="features")(x)  # the layer notebook 07 probes


@keras.saving.register_keras_serializable(package="alllib")
class SpectralDense(layers.Layer):
    """A dense layer whose kernel is divided by its largest singular value (Miyato et al. 2018), in
    `call`, so differentiably on every backend (Keras's `SpectralNormalization` writes the kernel
    variable, which JAX's stateless step treats differently). Training steps the power iteration."""

    def __init__(self, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight((input_shape[-1], self.units), "glorot_uniform", name="kernel")
        self.bias = self.add_weight((self.units,), "zeros", name="bias")
        self.u = self.add_weight(
            (1, self.units), keras.initializers.RandomNormal(), name="u", trainable=False
        )

    def call(self, inputs, training=False):
        kernel = _spectrally_normalised(self.kernel, self.u, training)
        outputs = ops.matmul(inputs, ops.cast(kernel, inputs.dtype)) + self.bias
        return self.activation(outputs)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, activation=keras.activations.serialize(self.activation))
        return config


@keras.saving.register_keras_serializable(package="alllib")
class SpectralConv2D(layers.Layer):
    """`SpectralDense` for a 2-D convolution: the kernel, read as a matrix of (height x width x
    input channels) rows and one column per filter, is divided by that matrix's largest singular
    value, as Miyato et al. (2018) do for convolutions."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = filters, kernel_size
        self.strides, self.padding = strides, padding
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        shape = (self.kernel_size, self.kernel_size, input_shape[-1], self.filters)
        self.kernel = self.add_weight(shape, "glorot_uniform", name="kernel")
        self.bias = self.add_weight((self.filters,), "zeros", name="bias")
        self.u = self.add_weight(
            (1, self.filters), keras.initializers.RandomNormal(), name="u", trainable=False
        )

    def call(self, inputs, training=False):
        kernel = _spectrally_normalised(self.kernel, self.u, training)
        outputs = ops.conv(inputs, ops.cast(kernel, inputs.dtype), strides=self.strides,
                           padding=self.padding) + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        size = [None if n is None else (n - (0 if self.padding == "same" else self.kernel_size - 1)
                                        + self.strides - 1) // self.strides
                for n in input_shape[1:3]]
        return (input_shape[0], *size, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      padding=self.padding, activation=keras.activations.serialize(self.activation))
        return config


def _spectrally_normalised(kernel, u_variable, training):
    """`kernel` over its largest singular value (as a matrix with one column per output), by one
    step of the power iteration from `u_variable`, which a training call advances."""
    matrix = ops.reshape(ops.cast(kernel, "float32"), (-1, kernel.shape[-1]))
    u = ops.cast(u_variable, "float32")
    v = _unit(ops.matmul(u, ops.transpose(matrix)))
    u = ops.stop_gradient(_unit(ops.matmul(v, matrix)))
    v = ops.stop_gradient(v)
    sigma = ops.sum(ops.matmul(v, matrix) * u)
    if training:
        u_variable.assign(ops.cast(u, u_variable.dtype))
    return kernel / ops.cast(sigma, kernel.dtype)


@keras.saving.register_keras_serializable(package="alllib")
class MinibatchStdDev(layers.Layer):
    """Append the batch's mean per-feature standard deviation (Karras et al. 2018) as a feature
    or channel: it shows the discriminator a collapse (alike samples), as no per-example one can."""

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        std = ops.sqrt(ops.var(x, axis=0) + 1e-8)
        spread = ops.cast(ops.mean(std), inputs.dtype)
        extra = ops.ones_like(inputs[..., :1]) * spread
        return ops.concatenate([inputs, extra], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


@keras.saving.register_keras_serializable(package="alllib")
class BatchFrequencies(layers.Layer):
    """Append the batch's mean label vector, its class frequencies, to every label vector: a
    discriminator then sees a predictor that puts every example in one class, which no
    per-example judge of label vectors can (such a collapse is not an equilibrium of the game)."""

    def call(self, inputs):
        mean = ops.mean(ops.cast(inputs, "float32"), axis=0, keepdims=True)
        return ops.concatenate([inputs, ops.ones_like(inputs) * ops.cast(mean, inputs.dtype)], -1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2 * input_shape[-1])


def scores_depend_on_batch(model):
    """True when `model` contains a `MinibatchStdDev` or `BatchFrequencies` layer: its score for
    one example then depends on the rest of the batch, so it cannot be read as a function of
    single points."""
    return any(isinstance(layer, (MinibatchStdDev, BatchFrequencies))
               for layer in model._flatten_layers())


def _unit(x):
    return x / ops.sqrt(ops.sum(ops.square(x)) + 1e-12)


def mlp_predictor(input_shape, num_classes, width=128, depth=2, name="predictor"):
    """Input (any shape, flattened) -> class probabilities (softmax)."""
    x = inputs = keras.Input(input_shape)
    x = layers.Flatten()(x)
    for _ in range(depth):
        x = layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x), name=name)


def conv_predictor(input_shape, num_classes, width=32, name="predictor"):
    """Image (MNIST- or CIFAR-sized) -> class probabilities: two conv blocks, global pooling."""
    x = inputs = keras.Input(input_shape)
    for filters in (width, 2 * width):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x), name=name)


def label_discriminator(
    num_classes, input_shape=None, width=64, depth=2, spectral_norm=False, batch_frequencies=False,
    name="discriminator",
):
    """Label vector -> one logit: is this a (softened) true label or a prediction? With
    `input_shape` it is conditional: called on `[x, label_vector]`, it embeds the flattened `x`
    with one dense layer. `spectral_norm` makes every dense layer a `SpectralDense`;
    `batch_frequencies` shows it the batch's class frequencies (`BatchFrequencies`)."""
    dense = SpectralDense if spectral_norm else layers.Dense
    labels = keras.Input((num_classes,))
    x = BatchFrequencies()(labels) if batch_frequencies else labels
    if input_shape is not None:
        features = keras.Input(input_shape)
        embedded = dense(width, activation="relu")(layers.Flatten()(features))
        x = layers.Concatenate()([embedded, x])
    for _ in range(depth):
        x = dense(width, activation="relu")(x)
    inputs = labels if input_shape is None else [features, labels]
    return keras.Model(inputs, dense(1)(x), name=name)
