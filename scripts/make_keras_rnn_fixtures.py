"""Make tests/data/keras_rnn_fixtures.npz with real Keras 3 (JAX backend), and check
tests/rnn_reference.py against Keras.

Run offline, in an environment that has Keras 3 and JAX (never from the test suite):

    KERAS_BACKEND=jax python scripts/make_keras_rnn_fixtures.py            # write the fixtures
    KERAS_BACKEND=jax python scripts/make_keras_rnn_fixtures.py --check-reference

The fixtures: for each small model, the weights as Keras's `model.get_weights()` returns them
(Keras's own initial draws, with the biases replaced by random values so that they matter), an
input and Keras's `predict` output, all float32. Keys: `<case>/w<i>`, `<case>/x`, `<case>/y`
(stateful: `x1, y1, x2, y2`).

--check-reference runs, in float64, Keras layers and tests/rnn_reference.py on the same data
(SimpleRNN / LSTM / GRU x return_sequences / go_backwards / masks with gaps and an all-masked
sample / return_state / given dropout masks; Bidirectional in every merge mode with and without
a mask; stateful across two calls; the fixtures themselves) and compares outputs, final states
and the jax.grad gradients with respect to the input and every weight.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "data", "keras_rnn_fixtures.npz")
sys.path.insert(0, os.path.join(ROOT, "tests"))


# --------------------------------------------------------------------------------------------
# fixtures


def _randomize_biases(model, rng):
    ws = model.get_weights()
    out = []
    for w in ws:
        if w.ndim == 1 or (w.ndim == 2 and w.shape[0] == 2):  # biases (GRU: (2, 3U))
            w = rng.uniform(-0.5, 0.5, w.shape).astype(np.float32)
        out.append(w)
    model.set_weights(out)


def make_fixtures():
    import keras
    from keras import layers

    keras.utils.set_random_seed(1234)
    rng = np.random.default_rng(1234)
    data = {}

    def add(name, model, x):
        _randomize_biases(model, rng)
        for i, w in enumerate(model.get_weights()):
            data[f"{name}/w{i}"] = np.asarray(w, np.float32)
        data[f"{name}/x"] = np.asarray(x, np.float32)
        data[f"{name}/y"] = np.asarray(model.predict(x, verbose=0), np.float32)

    x = rng.normal(size=(3, 5, 3)).astype(np.float32)
    add("simple_rnn", keras.Sequential(
        [keras.Input((5, 3)), layers.SimpleRNN(4, return_sequences=True)]), x)
    add("lstm", keras.Sequential([keras.Input((5, 3)), layers.LSTM(5)]), x)
    add("gru", keras.Sequential(
        [keras.Input((5, 3)), layers.GRU(4, return_sequences=True, go_backwards=True)]), x)
    add("bidi_lstm", keras.Sequential(
        [keras.Input((5, 3)), layers.Bidirectional(layers.LSTM(3, return_sequences=True))]), x)
    add("bidi_gru_sum", keras.Sequential(
        [keras.Input((5, 3)), layers.Bidirectional(layers.GRU(3), merge_mode="sum")]), x)
    ids = np.array([[3, 1, 0, 4, 6, 0], [0, 0, 0, 0, 0, 0], [5, 2, 2, 0, 0, 0],
                    [0, 0, 1, 2, 3, 4]], np.float32)
    add("emb_lstm", keras.Sequential(
        [keras.Input((6,)), layers.Embedding(7, 4, mask_zero=True),
         layers.LSTM(3, return_sequences=True)]), ids)
    xm = rng.normal(size=(3, 5, 2)).astype(np.float32)
    xm[0, 1] = 0.0
    xm[0, 3] = 0.0
    xm[1, :] = 0.0
    xm[2, 4] = 0.0
    add("masking_gru", keras.Sequential(
        [keras.Input((5, 2)), layers.Masking(0.0), layers.GRU(3)]), xm)
    # stateful: two consecutive predict calls
    model = keras.Sequential([keras.Input((3, 2), batch_size=2), layers.LSTM(3, stateful=True)])
    _randomize_biases(model, rng)
    for i, w in enumerate(model.get_weights()):
        data[f"stateful_lstm/w{i}"] = np.asarray(w, np.float32)
    x1 = rng.normal(size=(2, 3, 2)).astype(np.float32)
    x2 = rng.normal(size=(2, 3, 2)).astype(np.float32)
    data["stateful_lstm/x1"], data["stateful_lstm/x2"] = x1, x2
    # Direct calls: with the JAX backend, Keras 3.15's predict() does not write the states back
    # (two predict calls both start from zeros); calling the model does carry them, as
    # tf.keras's predict did.
    data["stateful_lstm/y1"] = np.asarray(model(x1), np.float32)
    data["stateful_lstm/y2"] = np.asarray(model(x2), np.float32)
    model.layers[0].reset_states()
    data["stateful_lstm/y1_after_reset"] = np.asarray(model(x1), np.float32)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, {len(data)} arrays")


# --------------------------------------------------------------------------------------------
# the reference against Keras (float64)


def check_reference():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import keras
    import rnn_reference as R
    from keras import layers

    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    rng = np.random.default_rng(7)
    worst = {"y": 0.0, "grad": 0.0, "step": 0.0}

    def cmp(what, got, want, key, tol=1e-9):
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        assert got.shape == want.shape, (what, got.shape, want.shape)
        err = float(np.abs(got - want).max()) if got.size else 0.0
        worst[key] = max(worst[key], err)
        assert err < tol, f"{what}: max abs difference {err}"

    def keras_run(layer, x, dy, mask=None, training=False):
        """Keras output(s) and jax.grad of sum(output * dy) w.r.t. x and each weight."""
        tv = [v.value for v in layer.trainable_variables]
        ntv = [v.value for v in layer.non_trainable_variables]
        kw = {} if mask is None else {"mask": jnp.asarray(mask)}

        def fn(tv, xx):
            out, _ = layer.stateless_call(tv, ntv, xx, training=training, **kw)
            outs = out if isinstance(out, (list, tuple)) else [out]
            return sum(jnp.sum(o * d) for o, d in zip(outs, dy)), outs

        (_, outs), (gw, gx) = jax.value_and_grad(fn, argnums=(0, 1), has_aux=True)(
            tv, jnp.asarray(x))
        # trainable_variables come in weight order (kernel, recurrent_kernel, bias; forward
        # then backward layer for Bidirectional)
        return [np.asarray(o) for o in outs], np.asarray(gx), [np.asarray(g) for g in gw]

    # keras.ops.tanh returns float32 for float64 input under jax_enable_x64 (Keras 3.15's
    # result_type(float64, float)), which breaks the float64 scan; jnp.tanh is the same function.
    @keras.saving.register_keras_serializable(package="check")
    def tanh64(z):
        return jnp.tanh(z)

    def _with_tanh(c):
        return lambda *a, **k: c(*a, activation=tanh64, **k)

    cls = {"SimpleRNN": _with_tanh(layers.SimpleRNN), "LSTM": _with_tanh(layers.LSTM),
           "GRU": _with_tanh(layers.GRU)}
    n = 0
    for kind in ("SimpleRNN", "LSTM", "GRU"):
        for rs in (False, True):
            for gb in (False, True):
                for rst in (False, True):
                    for mask_kind in (None, "gaps"):
                        for use_bias in (True, False):
                            b, t, f, u = 3, 5, 2, 3
                            x = rng.normal(size=(b, t, f))
                            layer = cls[kind](u, return_sequences=rs, go_backwards=gb,
                                              return_state=rst, use_bias=use_bias)
                            layer.build((b, t, f))
                            ws = [rng.uniform(-0.8, 0.8, w.shape) for w in layer.get_weights()]
                            layer.set_weights(ws)
                            mask = None
                            if mask_kind:
                                mask = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0],
                                                 [0, 1, 1, 0, 1]], bool)
                            y, _, _, _ = R.rnn_forward_backward(
                                kind, x, ws, return_sequences=rs, go_backwards=gb,
                                return_state=rst, mask=mask, use_bias=use_bias)
                            ys = y if rst else [y]
                            dys = [rng.normal(size=a.shape) for a in ys]
                            _, dx, grads, _ = R.rnn_forward_backward(
                                kind, x, ws, dys if rst else dys[0], return_sequences=rs,
                                go_backwards=gb, return_state=rst, mask=mask,
                                use_bias=use_bias)
                            kys, kdx, kgrads = keras_run(layer, x, dys, mask)
                            what = (f"{kind} rs={rs} gb={gb} state={rst} mask={mask_kind} "
                                    f"bias={use_bias}")
                            for i, (a, bb) in enumerate(zip(ys, kys)):
                                cmp(f"{what} y[{i}]", a, bb, "y")
                            cmp(what + " dx", dx, kdx, "grad")
                            assert len(grads) == len(kgrads)
                            for i, (a, bb) in enumerate(zip(grads, kgrads)):
                                cmp(f"{what} dw{i}", a, bb, "grad")
                            n += 1
    print(f"{n} SimpleRNN/LSTM/GRU configurations match")

    # GRU reset_after=False (the reference has it too)
    x = rng.normal(size=(2, 4, 3))
    layer = cls["GRU"](3, reset_after=False, return_sequences=True)
    layer.build(x.shape)
    ws = [rng.uniform(-0.8, 0.8, w.shape) for w in layer.get_weights()]
    layer.set_weights(ws)
    dy = rng.normal(size=(2, 4, 3))
    y, dx, grads, _ = R.rnn_forward_backward("GRU", x, ws, dy, return_sequences=True,
                                             reset_after=False)
    kys, kdx, kg = keras_run(layer, x, [dy])
    cmp("GRU reset_after=False y", y, kys[0], "y")
    cmp("GRU reset_after=False dx", dx, kdx, "grad")
    for a, bb in zip(grads, kg):
        cmp("GRU reset_after=False dw", a, bb, "grad")
    print("GRU reset_after=False matches")

    # dropout: give Keras's cells our (scaled) masks, then compare the training=True pass
    for kind in ("SimpleRNN", "LSTM", "GRU"):
        for rate, rrate in ((0.3, 0.0), (0.0, 0.4), (0.3, 0.4)):
            b, t, f, u = 3, 4, 3, 2
            x = rng.normal(size=(b, t, f))
            layer = cls[kind](u, dropout=rate, recurrent_dropout=rrate, return_sequences=True)
            layer.build(x.shape)
            ws = [rng.uniform(-0.8, 0.8, w.shape) for w in layer.get_weights()]
            layer.set_weights(ws)
            g = R.GATES[kind]
            per_gate = kind != "SimpleRNN" and rrate > 0

            def draw(shape, r):
                return (rng.uniform(size=shape) >= r) / (1.0 - r)

            dm = rm = None
            if rate:
                dm = [draw((b, f), rate) for _ in range(g)] if per_gate else draw((b, f), rate)
            if rrate:
                rm = [draw((b, u), rrate) for _ in range(g)] if per_gate else draw((b, u), rrate)
            layer.cell._dropout_mask = (None if dm is None else
                                        [jnp.asarray(m) for m in dm] if per_gate else
                                        jnp.asarray(dm))
            layer.cell._recurrent_dropout_mask = (None if rm is None else
                                                  [jnp.asarray(m) for m in rm] if per_gate
                                                  else jnp.asarray(rm))
            dy = rng.normal(size=(b, t, u))
            y, dx, grads, _ = R.rnn_forward_backward(
                kind, x, ws, dy, return_sequences=True, dropout_mask=dm,
                recurrent_dropout_mask=rm)
            kys, kdx, kg = keras_run(layer, x, [dy], training=True)
            what = f"{kind} dropout={rate} recurrent_dropout={rrate}"
            cmp(what + " y", y, kys[0], "y")
            cmp(what + " dx", dx, kdx, "grad")
            for a, bb in zip(grads, kg):
                cmp(what + " dw", a, bb, "grad")
    print("dropout placement matches (given masks)")

    # Bidirectional
    for kind in ("LSTM", "GRU", "SimpleRNN"):
        for mode in ("concat", "sum", "mul", "ave"):
            for rs in (False, True):
                for use_mask in (False, True):
                    b, t, f, u = 3, 4, 2, 3
                    x = rng.normal(size=(b, t, f))
                    layer = layers.Bidirectional(cls[kind](u, return_sequences=rs),
                                                 merge_mode=mode)
                    layer.build(x.shape)
                    ws = [rng.uniform(-0.8, 0.8, w.shape) for w in layer.get_weights()]
                    layer.set_weights(ws)
                    k = len(ws) // 2
                    mask = (np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0]], bool)
                            if use_mask else None)
                    y, _, _ = R.bidirectional_forward_backward(
                        kind, x, ws[:k], ws[k:], merge_mode=mode, return_sequences=rs,
                        mask=mask)
                    dy = rng.normal(size=y.shape)
                    y, dx, grads = R.bidirectional_forward_backward(
                        kind, x, ws[:k], ws[k:], dy, merge_mode=mode, return_sequences=rs,
                        mask=mask)
                    kys, kdx, kg = keras_run(layer, x, [dy], mask)
                    what = f"Bidirectional({kind}, {mode}, rs={rs}, mask={use_mask})"
                    cmp(what + " y", y, kys[0], "y")
                    cmp(what + " dx", dx, kdx, "grad")
                    for a, bb in zip(grads, kg):
                        cmp(what + " dw", a, bb, "grad")
    print("Bidirectional matches")

    # stateful across two calls == one run over the concatenated time axis
    layer = cls["LSTM"](3, stateful=True, return_sequences=True)
    x = rng.normal(size=(2, 6, 2))
    layer.build(x.shape)
    ws = [rng.uniform(-0.8, 0.8, w.shape) for w in layer.get_weights()]
    layer.set_weights(ws)
    y1 = np.asarray(layer(x[:, :2]))
    y2 = np.asarray(layer(x[:, 2:]))
    want = R.rnn_forward("LSTM", x, ws, return_sequences=True)
    cmp("stateful", np.concatenate([y1, y2], axis=1), want, "y")
    layer.reset_states()
    cmp("stateful after reset", np.asarray(layer(x[:, :2])), want[:, :2], "y")
    print("stateful matches")

    # one SGD step with gradient clipping, Sequential([RNN, Dense]) and "mse"
    for kind in ("LSTM", "GRU", "SimpleRNN"):
        for clip in (dict(clipnorm=0.05), dict(clipvalue=0.01), dict(global_clipnorm=0.05)):
            b, t, f, u, k = 4, 3, 2, 3, 2
            x = rng.normal(size=(b, t, f))
            yt = rng.normal(size=(b, k))
            model = keras.Sequential([keras.Input((t, f)), cls[kind](u), layers.Dense(k)])
            ws = [rng.uniform(-0.8, 0.8, w.shape) for w in model.get_weights()]
            model.set_weights(ws)
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5, **clip),
                          loss="mse")
            loss = model.train_on_batch(x, yt)
            want_loss, grads = R.rnn_dense_mse_grads(kind, x, yt, ws)
            want = R.sgd_clipped_step(ws, grads, 0.5, **clip)
            # (Keras's compiled loss runs partly in float32 here: agreement ~1e-9, not 1e-15)
            cmp(f"{kind} {clip} loss", loss, want_loss, "step", 1e-6)
            for a, bb in zip(model.get_weights(), want):
                cmp(f"{kind} {clip} step", a, bb, "step", 1e-6)
    print("clipped SGD steps match")

    # the float32 fixtures against the float64 reference
    if os.path.exists(OUT):
        d = np.load(OUT)
        tol = 2e-6

        def close(what, got, want):
            err = float(np.abs(np.asarray(got) - want).max())
            print(f"  fixture {what}: max |keras - reference| = {err:.2e}")
            assert err < tol, what

        w = lambda c, n: [d[f"{c}/w{i}"] for i in range(n)]  # noqa: E731
        close("simple_rnn", d["simple_rnn/y"], R.rnn_forward(
            "SimpleRNN", d["simple_rnn/x"], w("simple_rnn", 3), return_sequences=True))
        close("lstm", d["lstm/y"], R.rnn_forward("LSTM", d["lstm/x"], w("lstm", 3)))
        close("gru", d["gru/y"], R.rnn_forward("GRU", d["gru/x"], w("gru", 3),
                                                return_sequences=True, go_backwards=True))
        ws = w("bidi_lstm", 6)
        close("bidi_lstm", d["bidi_lstm/y"], R.bidirectional_forward_backward(
            "LSTM", d["bidi_lstm/x"], ws[:3], ws[3:], return_sequences=True)[0])
        ws = w("bidi_gru_sum", 6)
        close("bidi_gru_sum", d["bidi_gru_sum/y"], R.bidirectional_forward_backward(
            "GRU", d["bidi_gru_sum/x"], ws[:3], ws[3:], merge_mode="sum")[0])
        ws = w("emb_lstm", 4)
        ids = d["emb_lstm/x"]
        emb, _ = R.embedding_forward_backward(ids, ws[0])
        close("emb_lstm", d["emb_lstm/y"], R.rnn_forward(
            "LSTM", emb, ws[1:], return_sequences=True, mask=ids != 0))
        xm, keep = R.masking_forward(d["masking_gru/x"])
        close("masking_gru", d["masking_gru/y"], R.rnn_forward(
            "GRU", xm, w("masking_gru", 3), mask=keep))
        ws = w("stateful_lstm", 3)
        full = R.rnn_forward("LSTM", np.concatenate(
            [d["stateful_lstm/x1"], d["stateful_lstm/x2"]], axis=1), ws, return_sequences=True)
        close("stateful_lstm 1", d["stateful_lstm/y1"], full[:, 2])
        close("stateful_lstm 2", d["stateful_lstm/y2"], full[:, 5])
        close("stateful_lstm reset", d["stateful_lstm/y1_after_reset"], full[:, 2])
    print(f"all checks passed; largest |reference - keras| in float64: outputs "
          f"{worst['y']:.1e}, gradients {worst['grad']:.1e}; clipped SGD steps {worst['step']:.1e}")


if __name__ == "__main__":
    if "--check-reference" in sys.argv:
        check_reference()
    else:
        make_fixtures()
