"""Float64 NumPy reference implementations of the Keras 3 numerics that ferrax reproduces.

Everything here is written from the Keras 3 definitions (keras/src/activations, losses,
optimizers, initializers, layers) and checked against Keras 3 itself (jax backend, float64)
outside this repository; the tests additionally check every analytic gradient here against
central finite differences. Nothing here imports ferrax or Keras: NumPy and the standard
library only.

Conventions: inputs are converted to float64; outputs are float64 NumPy arrays (or Python
floats for scalar losses).
"""

from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------------------------
# constants

#: keras.config.epsilon(); the probability clip of the cross-entropies.
EPSILON = 1e-7
#: The clip bounds as Keras actually applies them to float32 tensors: 1 - 1e-7 rounds to
#: 1 - 2**-23 in float32, so log(1 - p) at the upper clip is log(1.19e-7), not log(1e-7).
CLIP_LO = float(np.float32(EPSILON))
CLIP_HI = float(np.float32(1.0 - EPSILON))

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
LEAKY_RELU_SLOPE = 0.2  # keras.activations.leaky_relu default negative_slope
ELU_ALPHA = 1.0
#: std of a standard normal truncated to [-2, 2] (Keras's VarianceScaling divides by it).
TRUNCATED_NORMAL_STD = 0.87962566103423978

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def sigmoid(x):
    x = _f64(x)
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # exact and overflow-free


def softplus(x):
    x = _f64(x)
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def logsumexp(x, axis=-1, keepdims=True):
    x = _f64(x)
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def softmax(x, axis=-1):
    x = _f64(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    x = _f64(x)
    return x - logsumexp(x, axis=axis)


def _phi(x):  # standard normal pdf
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _Phi(x):  # standard normal cdf
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


# --------------------------------------------------------------------------------------------
# activations: forward y = f(x), elementwise derivative f'(x); softmax / log_softmax act on the
# last axis and have a vector-Jacobian product instead.

_GELU_C = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x):
    u = _GELU_C * (x + 0.044715 * x**3)
    return 0.5 * x * (1.0 + np.tanh(u))


def _gelu_tanh_grad(x):
    u = _GELU_C * (x + 0.044715 * x**3)
    t = np.tanh(u)
    du = _GELU_C * (1.0 + 3 * 0.044715 * x**2)
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du


_ELEMENTWISE = {
    "linear": (lambda x: x, lambda x: np.ones_like(x)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(np.float64)),
    "sigmoid": (sigmoid, lambda x: sigmoid(x) * (1.0 - sigmoid(x))),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "leaky_relu": (
        lambda x: np.where(x > 0, x, LEAKY_RELU_SLOPE * x),
        lambda x: np.where(x > 0, 1.0, LEAKY_RELU_SLOPE),
    ),
    "elu": (
        lambda x: np.where(x > 0, x, ELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
        lambda x: np.where(x > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(x, 0.0))),
    ),
    "selu": (
        lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
        lambda x: SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0))),
    ),
    # keras.activations.gelu(x, approximate=False): x * Phi(x) with the exact erf.
    "gelu": (lambda x: x * _Phi(x), lambda x: _Phi(x) + x * _phi(x)),
    "gelu_approximate": (_gelu_tanh, _gelu_tanh_grad),
    "silu": (lambda x: x * sigmoid(x), lambda x: sigmoid(x) * (1.0 + x * (1.0 - sigmoid(x)))),
    "softplus": (softplus, sigmoid),
    "softsign": (lambda x: x / (1.0 + np.abs(x)), lambda x: 1.0 / (1.0 + np.abs(x)) ** 2),
    # Keras 3: hard_sigmoid(x) = relu6(x + 3) / 6 (tf.keras 2 used 0.2 * x + 0.5).
    "hard_sigmoid": (
        lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
        lambda x: np.where((x > -3.0) & (x < 3.0), 1.0 / 6.0, 0.0),
    ),
}
_ELEMENTWISE["swish"] = _ELEMENTWISE["silu"]

ACTIVATIONS = sorted(list(_ELEMENTWISE) + ["softmax", "log_softmax"])
ACTIVATIONS.remove("gelu_approximate")  # not a Keras name; reference only

#: Points where the derivative is discontinuous (tests keep inputs away from them).
ACTIVATION_KINKS = {
    "relu": (0.0,),
    "leaky_relu": (0.0,),
    "selu": (0.0,),
    "elu": (0.0,),  # C1 for alpha = 1, kept anyway: the second derivative jumps
    "hard_sigmoid": (-3.0, 3.0),
}


def activation(name, x):
    """y = act(x) in float64."""
    x = _f64(x)
    if name == "softmax":
        return softmax(x)
    if name == "log_softmax":
        return log_softmax(x)
    return _ELEMENTWISE[name][0](x)


def activation_vjp(name, x, dy):
    """dx = dy * d act/dx (the vector-Jacobian product along the last axis for softmaxes)."""
    x, dy = _f64(x), _f64(dy)
    if name == "softmax":
        s = softmax(x)
        return s * (dy - np.sum(dy * s, axis=-1, keepdims=True))
    if name == "log_softmax":
        return dy - softmax(x) * np.sum(dy, axis=-1, keepdims=True)
    return dy * _ELEMENTWISE[name][1](x)


def away_from_kinks(name, x, margin=1e-2):
    """Move entries of x closer than `margin` to a kink of `name` to `margin` past it."""
    x = np.array(x, dtype=np.float64, copy=True)
    for k in ACTIVATION_KINKS.get(name, ()):
        near = np.abs(x - k) < margin
        x[near] = k + np.where(x[near] >= k, margin, -margin)
    return x


# --------------------------------------------------------------------------------------------
# losses. Per-sample losses follow keras.losses.*; the reduction is Keras's
# "sum_over_batch_size": sum_i w_i * loss_i / batch (divide by the batch, not by sum(w)).

LOSS_ALIASES = {
    "mse": "mean_squared_error",
    "mean_squared_error": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mean_absolute_error": "mean_absolute_error",
    "huber": "huber",
    "binary_crossentropy": "binary_crossentropy",
    "categorical_crossentropy": "categorical_crossentropy",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
}


def one_hot(ids, k):
    ids = np.asarray(ids).astype(np.int64).reshape(-1)
    out = np.zeros((ids.shape[0], k), dtype=np.float64)
    out[np.arange(ids.shape[0]), ids] = 1.0
    return out


def _per_sample_and_grad(name, y_true, y_pred, from_logits, label_smoothing, delta):
    """Per-sample loss l (batch,) and dl_i/dy_pred (batch, k) (row i depends on row i only)."""
    name = LOSS_ALIASES[name]
    p = _f64(y_pred)
    k = p.shape[-1]
    if name == "sparse_categorical_crossentropy":
        # Keras 3's SparseCategoricalCrossentropy has no label_smoothing argument.
        t = one_hot(y_true, k)
        name = "categorical_crossentropy"
        label_smoothing = 0.0
    else:
        t = _f64(y_true)

    if name == "mean_squared_error":
        e = p - t
        return np.mean(e * e, axis=-1), 2.0 * e / k
    if name == "mean_absolute_error":
        e = p - t
        return np.mean(np.abs(e), axis=-1), np.sign(e) / k
    if name == "huber":
        e = p - t
        a = np.abs(e)
        quad = a <= delta
        l = np.where(quad, 0.5 * e * e, delta * a - 0.5 * delta * delta)
        g = np.where(quad, e, delta * np.sign(e))
        return np.mean(l, axis=-1), g / k
    if name == "binary_crossentropy":
        if label_smoothing:
            t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
        if from_logits:
            l = softplus(p) - t * p  # = -t log sig(p) - (1 - t) log sig(-p)
            return np.mean(l, axis=-1), (sigmoid(p) - t) / k
        c = np.clip(p, CLIP_LO, CLIP_HI)
        inside = (p > CLIP_LO) & (p < CLIP_HI)
        l = -(t * np.log(c) + (1.0 - t) * np.log(1.0 - c))
        g = -(t / c - (1.0 - t) / (1.0 - c)) * inside
        return np.mean(l, axis=-1), g / k
    if name == "categorical_crossentropy":
        if label_smoothing:
            t = t * (1.0 - label_smoothing) + label_smoothing / k
        if from_logits:
            ls = log_softmax(p)
            l = -np.sum(t * ls, axis=-1)
            g = softmax(p) * np.sum(t, axis=-1, keepdims=True) - t
            return l, g
        # Keras first renormalises the probabilities along the class axis, then clips:
        # q = p / sum(p); l = -sum t log clip(q). So dl/dp has a -sum(g q)/S term: with
        # one-hot t and rows of p summing to 1 the gradient is -t/p + 1, not -t/p.
        s = np.sum(p, axis=-1, keepdims=True)
        q = p / s
        c = np.clip(q, CLIP_LO, CLIP_HI)
        inside = (q > CLIP_LO) & (q < CLIP_HI)
        l = -np.sum(t * np.log(c), axis=-1)
        gq = -(t / c) * inside
        g = (gq - np.sum(gq * q, axis=-1, keepdims=True)) / s
        return l, g
    raise ValueError(name)


def per_sample_loss(name, y_true, y_pred, *, from_logits=False, label_smoothing=0.0, delta=1.0):
    return _per_sample_and_grad(name, y_true, y_pred, from_logits, label_smoothing, delta)[0]


def loss_value_and_grad(
    name,
    y_true,
    y_pred,
    sample_weight=None,
    *,
    from_logits=False,
    label_smoothing=0.0,
    delta=1.0,
):
    """(value, d value / d y_pred) with Keras's sum_over_batch_size reduction."""
    l, g = _per_sample_and_grad(name, y_true, y_pred, from_logits, label_smoothing, delta)
    b = l.shape[0]
    w = np.ones(b) if sample_weight is None else _f64(sample_weight).reshape(b)
    value = float(np.sum(w * l) / b)
    return value, g * (w / b)[:, None]


def loss_value(name, y_true, y_pred, sample_weight=None, **kw):
    return loss_value_and_grad(name, y_true, y_pred, sample_weight, **kw)[0]


# --------------------------------------------------------------------------------------------
# optimizers (Keras 3, keras/src/optimizers). Per step, in this order:
#   1. clip the gradients: clipnorm (each gradient to norm <= c: g * c / max(|g|, c)), or
#      global_clipnorm (all of them by one factor c / max(global norm, c)), or clipvalue
#      (elementwise to [-v, v]); at most one of the three may be set;
#   2. decoupled weight decay, if weight_decay is not None, on the *variables* before the
#      update and independently of the gradient: w <- w - w * weight_decay * lr
#      (for every optimizer, not just AdamW, whose only difference is weight_decay=0.004);
#   3. the optimizer's update with the clipped gradient; step t counts from 1.

OPTIMIZER_DEFAULTS = {
    "SGD": dict(learning_rate=0.01, momentum=0.0, nesterov=False),
    "RMSprop": dict(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False),
    "Adam": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False),
    "AdamW": dict(
        learning_rate=0.001,
        weight_decay=0.004,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
    ),
    "Adagrad": dict(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7),
    "Nadam": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
}
_BASE_DEFAULTS = dict(weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None)


def optimizer_config(name, **overrides):
    """The full Keras config (defaults + overrides) of optimizer `name`."""
    cfg = dict(_BASE_DEFAULTS)
    cfg.update(OPTIMIZER_DEFAULTS[name])
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise TypeError(f"{name} has no argument(s) {sorted(unknown)}")
    cfg.update(overrides)
    return cfg


def clip_gradients(grads, clipnorm=None, clipvalue=None, global_clipnorm=None):
    grads = [_f64(g) for g in grads]
    if clipnorm and clipnorm > 0:
        return [g * clipnorm / max(math.sqrt(float(np.sum(g * g))), clipnorm) for g in grads]
    if global_clipnorm and global_clipnorm > 0:
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        return [g * (global_clipnorm / max(norm, global_clipnorm)) for g in grads]
    if clipvalue and clipvalue > 0:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return grads


def optimizer_run(name, params, grads_per_step, **overrides):
    """Run optimizer `name` (Keras config `overrides`) on float64 copies of `params`.

    Returns one entry per step: the list of variables after that step.
    """
    cfg = optimizer_config(name, **overrides)
    lr = cfg["learning_rate"]
    ps = [np.array(p, dtype=np.float64, copy=True) for p in params]
    zeros = [np.zeros_like(p) for p in ps]
    st = {
        "m": [z.copy() for z in zeros],
        "v": [z.copy() for z in zeros],
        "vhat": [z.copy() for z in zeros],
        "avg": [z.copy() for z in zeros],
        "acc": [np.full_like(p, cfg.get("initial_accumulator_value", 0.0)) for p in ps],
    }
    u_product = 1.0  # Nadam's running product of the momentum schedule
    history = []
    for step, grads in enumerate(grads_per_step):
        t = step + 1
        grads = clip_gradients(
            grads,
            clipnorm=cfg["clipnorm"],
            clipvalue=cfg["clipvalue"],
            global_clipnorm=cfg["global_clipnorm"],
        )
        if cfg["weight_decay"] is not None:
            for p in ps:
                p -= p * cfg["weight_decay"] * lr
        if name == "Nadam":
            b1 = cfg["beta_1"]
            u_product *= b1 * (1.0 - 0.5 * 0.96**t)
        for i, (p, g) in enumerate(zip(ps, grads)):
            _update(name, cfg, lr, t, p, g, i, st, u_product)
        history.append([p.copy() for p in ps])
    return history


def _update(name, cfg, lr, t, p, g, i, st, u_product):
    if name == "SGD":
        mom = cfg["momentum"]
        if mom != 0:
            m = st["m"][i]
            m[...] = m * mom - lr * g
            if cfg["nesterov"]:
                p += m * mom - lr * g
            else:
                p += m
        else:
            p -= lr * g
    elif name == "RMSprop":
        rho, eps = cfg["rho"], cfg["epsilon"]
        v = st["v"][i]
        v[...] = rho * v + (1.0 - rho) * g * g
        if cfg["centered"]:
            a = st["avg"][i]
            a[...] = rho * a + (1.0 - rho) * g
            denom = v - a * a + eps  # epsilon inside the sqrt
        else:
            denom = v + eps
        inc = lr * g / np.sqrt(denom)
        if cfg["momentum"] > 0:
            m = st["m"][i]
            m[...] = cfg["momentum"] * m + inc
            p -= m
        else:
            p -= inc
    elif name in ("Adam", "AdamW"):
        b1, b2, eps = cfg["beta_1"], cfg["beta_2"], cfg["epsilon"]
        m, v = st["m"][i], st["v"][i]
        # epsilon is "epsilon hat": added to sqrt(v) of the *uncorrected* v, with the bias
        # corrections folded into the step size.
        alpha = lr * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        m += (g - m) * (1.0 - b1)
        v += (g * g - v) * (1.0 - b2)
        if cfg["amsgrad"]:
            vh = st["vhat"][i]
            vh[...] = np.maximum(vh, v)
            v = vh
        p -= m * alpha / (np.sqrt(v) + eps)
    elif name == "Adagrad":
        acc = st["acc"][i]
        acc += g * g
        p -= lr * g / np.sqrt(acc + cfg["epsilon"])  # epsilon inside the sqrt
    elif name == "Nadam":
        b1, b2, eps = cfg["beta_1"], cfg["beta_2"], cfg["epsilon"]
        u_t = b1 * (1.0 - 0.5 * 0.96**t)
        u_t1 = b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        u_prod_t = u_product  # already includes u_t
        u_prod_t1 = u_prod_t * u_t1
        m, v = st["m"][i], st["v"][i]
        m += (g - m) * (1.0 - b1)
        v += (g * g - v) * (1.0 - b2)
        m_hat = u_t1 * m / (1.0 - u_prod_t1) + (1.0 - u_t) * g / (1.0 - u_prod_t)
        v_hat = v / (1.0 - b2**t)
        p -= m_hat * lr / (np.sqrt(v_hat) + eps)
    else:
        raise ValueError(name)


# --------------------------------------------------------------------------------------------
# initializers (keras/src/initializers)


def compute_fans(shape):
    """Keras's compute_fans."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = 1
    for d in shape[:-2]:
        receptive *= d
    return shape[-2] * receptive, shape[-1] * receptive


_VARIANCE_SCALING = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
}


def initializer_distribution(name, shape, **kw):
    """What Keras's initializer `name` draws for `shape`, as a dict.

    kind "uniform": low, high. kind "truncated_normal": mean, stddev (the parameter: the
    normal before truncation), bound (values lie in mean +- bound = 2 stddev), std (the std
    of the result). kind "normal": mean, stddev. kind "constant": value. kind "orthogonal":
    gain.
    """
    if name in _VARIANCE_SCALING:
        scale, mode, dist = _VARIANCE_SCALING[name]
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        scale /= max(1.0, n)
        if dist == "uniform":
            limit = math.sqrt(3.0 * scale)
            return {"kind": "uniform", "low": -limit, "high": limit}
        stddev = math.sqrt(scale) / TRUNCATED_NORMAL_STD
        return {
            "kind": "truncated_normal",
            "mean": 0.0,
            "stddev": stddev,
            "bound": 2.0 * stddev,
            "std": math.sqrt(scale),
        }
    if name == "zeros":
        return {"kind": "constant", "value": 0.0}
    if name == "ones":
        return {"kind": "constant", "value": 1.0}
    if name == "constant":
        return {"kind": "constant", "value": kw.get("value", 0.0)}
    if name == "random_normal":
        return {"kind": "normal", "mean": kw.get("mean", 0.0), "stddev": kw.get("stddev", 0.05)}
    if name == "random_uniform":
        return {"kind": "uniform", "low": kw.get("minval", -0.05), "high": kw.get("maxval", 0.05)}
    if name == "truncated_normal":
        stddev = kw.get("stddev", 0.05)
        return {
            "kind": "truncated_normal",
            "mean": kw.get("mean", 0.0),
            "stddev": stddev,
            "bound": 2.0 * stddev,
            "std": stddev * TRUNCATED_NORMAL_STD,
        }
    if name == "orthogonal":
        return {"kind": "orthogonal", "gain": kw.get("gain", 1.0)}
    raise ValueError(name)


def distribution_cdf(dist, x):
    """CDF of a "uniform", "normal" or "truncated_normal" distribution dict at x."""
    x = _f64(x)
    if dist["kind"] == "uniform":
        lo, hi = dist["low"], dist["high"]
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    z = (x - dist["mean"]) / dist["stddev"]
    if dist["kind"] == "normal":
        return _Phi(z)
    if dist["kind"] == "truncated_normal":
        lo, hi = _Phi(np.float64(-2.0)), _Phi(np.float64(2.0))
        return np.clip((_Phi(z) - lo) / (hi - lo), 0.0, 1.0)
    raise ValueError(dist["kind"])


def distribution_mean_std(dist):
    if dist["kind"] == "uniform":
        lo, hi = dist["low"], dist["high"]
        return (lo + hi) / 2.0, (hi - lo) / math.sqrt(12.0)
    if dist["kind"] == "normal":
        return dist["mean"], dist["stddev"]
    if dist["kind"] == "truncated_normal":
        return dist["mean"], dist["std"]
    raise ValueError(dist["kind"])


def ks_statistic(sample, dist):
    """Kolmogorov-Smirnov distance between the empirical CDF of `sample` and `dist`."""
    x = np.sort(_f64(sample).ravel())
    n = x.size
    cdf = distribution_cdf(dist, x)
    upper = np.arange(1, n + 1) / n - cdf
    lower = cdf - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


# --------------------------------------------------------------------------------------------
# layers


def regularizer_penalty(w, l1=0.0, l2=0.0):
    """Keras L1/L2/L1L2: l1 * sum|w| + l2 * sum w^2 (no 1/2)."""
    w = _f64(w)
    return float(l1 * np.sum(np.abs(w)) + l2 * np.sum(w * w))


def regularizer_grad(w, l1=0.0, l2=0.0):
    w = _f64(w)
    return l1 * np.sign(w) + 2.0 * l2 * w


def dense_forward(x, kernel, bias=None, activation_name=None):
    z = _f64(x) @ _f64(kernel)
    if bias is not None:
        z = z + _f64(bias)
    return activation(activation_name or "linear", z)


def dense_forward_backward(x, kernel, bias=None, activation_name=None, dy=None):
    """(y, dx, [dkernel, dbias]) of y = act(x @ kernel + bias), for the output cotangent dy."""
    x, kernel = _f64(x), _f64(kernel)
    z = x @ kernel
    if bias is not None:
        z = z + _f64(bias)
    act = activation_name or "linear"
    y = activation(act, z)
    dy = np.ones_like(y) if dy is None else _f64(dy)
    dz = activation_vjp(act, z, dy)
    grads = [x.T @ dz]
    if bias is not None:
        grads.append(dz.sum(axis=0))
    return y, dz @ kernel.T, grads


def dropout_reference(x, keep_mask, rate):
    """Keras's dropout given the mask it drew: kept entries x / (1 - rate), others 0."""
    x = _f64(x)
    return np.where(keep_mask, x / (1.0 - rate), 0.0)


# --------------------------------------------------------------------------------------------
# finite differences


def numerical_grad(f, x, eps=1e-6):
    """Central finite-difference gradient of the scalar function f at float64 array x."""
    x = np.array(x, dtype=np.float64, copy=True)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(x)
        flat[i] = old - eps
        fm = f(x)
        flat[i] = old
        gflat[i] = (fp - fm) / (2.0 * eps)
    return g


# --------------------------------------------------------------------------------------------
# comparison


def assert_close(got, want, *, rtol, atol, what=""):
    """assert |got - want| <= atol + rtol * |want| elementwise (NaN fails), with a useful message.

    `got` is usually a float32 result of ferrax, `want` the float64 reference.
    """
    got_arr = np.asarray(got)
    want_arr = np.asarray(want, dtype=np.float64)
    if got_arr.shape != want_arr.shape:
        raise AssertionError(f"{what}: shape {got_arr.shape}, expected {want_arr.shape}")
    g = got_arr.astype(np.float64)
    err = np.abs(g - want_arr)
    bad = ~(err <= atol + rtol * np.abs(want_arr))
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        worst = np.nanargmax(np.where(np.isnan(err), np.inf, err)) if err.size else 0
        widx = np.unravel_index(worst, err.shape) if err.ndim else ()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} entries outside rtol={rtol}, atol={atol}; "
            f"first at {idx}: got {g[idx]!r}, expected {want_arr[idx]!r}; "
            f"largest error at {tuple(int(i) for i in widx)}: got {g[widx]!r}, "
            f"expected {want_arr[widx]!r}"
        )
