"""Small reference networks: MLPs for 2-D data, DCGAN-style convnets for images."""

import keras
from keras import layers


def mlp_generator(latent_dim, output_dim=2, width=128, depth=2, name="generator"):
    """Noise -> point in R^output_dim."""
    x = inputs = keras.Input((latent_dim,))
    for _ in range(depth):
        x = layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(output_dim)(x), name=name)


def mlp_discriminator(input_dim=2, width=128, depth=2, name="discriminator"):
    """Point -> one logit."""
    x = inputs = keras.Input((input_dim,))
    for _ in range(depth):
        x = layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(1)(x), name=name)


def dcgan_generator(latent_dim, image_shape=(28, 28, 1), width=64, name="generator"):
    """Noise -> image in [-1, 1]: a dense projection, then two stride-2 transposed convs.

    Height and width must be divisible by 4 (28x28 MNIST, 32x32 CIFAR-10; 8x8 digits).
    """
    height, width_px, channels = image_shape
    if height % 4 or width_px % 4:
        raise ValueError(f"`image_shape` height and width must be divisible by 4; got {image_shape}.")
    x = inputs = keras.Input((latent_dim,))
    x = layers.Dense((height // 4) * (width_px // 4) * 2 * width, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Reshape((height // 4, width_px // 4, 2 * width))(x)
    x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", activation="tanh")(x)
    return keras.Model(inputs, x, name=name)


def dcgan_discriminator(image_shape=(28, 28, 1), width=64, name="discriminator"):
    """Image -> one logit: two stride-2 convs with LeakyReLU, no BatchNorm (safe for penalties)."""
    x = inputs = keras.Input(image_shape)
    x = layers.Conv2D(width, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.Conv2D(2 * width, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(1)(x), name=name)
