"""Float64 NumPy references for ferrax's recurrent layers and embeddings (Keras 3 semantics).

Written from the Keras 3.15 sources (keras/src/layers/rnn/*.py, keras/src/backend/jax/rnn.py,
keras/src/layers/core/embedding.py, masking.py) and checked against Keras 3.15 itself (JAX
backend: forward outputs, final states and jax.grad gradients) by
`scripts/make_keras_rnn_fixtures.py --check-reference`, outside the test suite. The tests check
every analytic gradient here against central finite differences. NumPy and the standard library
only (plus the sibling `reference` module for activations): no ferrax, no Keras.

Semantics (Keras 3, as verified):

* Weights: kernel (F, G*U), recurrent_kernel (U, G*U), bias (G*U,) with G = 1 (SimpleRNN),
  4 (LSTM, gate blocks i, f, c, o) or 3 (GRU, blocks z, r, h; bias (2, 3U) with reset_after:
  row 0 the input bias, row 1 the recurrent bias).
* LSTM step: z = x K + h R + b; i, f, o = sigma(z_i, z_f, z_o); c' = f c + i tanh(z_c);
  h' = o tanh(c').
* GRU step (reset_after=True): x_g = x K_g + b_in_g, r_g = h R_g + b_rec_g;
  z = sigma(x_z + r_z), r = sigma(x_r + r_r), hh = tanh(x_h + r * r_h), h' = z h + (1 - z) hh.
  (reset_after=False: bias (3U,), hh = tanh(x_h + (r * h) R_h).)
* Masks (bool (batch, T), True = keep): at a masked step the states are carried over unchanged
  and the output is the previous output (the carried h; zeros before any kept step) -- or zeros
  when `zero_output_for_mask` (what Bidirectional forces on its two layers when they return
  sequences). A sample with every step masked ends with its initial state (zeros) and outputs
  zeros everywhere.
* go_backwards: the steps are processed from t = T-1 down to 0 and the returned sequence is in
  *processing* order (output[:, 0] belongs to input step T-1); the last output is the one of
  input step 0. Bidirectional flips the backward layer's sequence back before merging.
* Dropout (training only): masks are drawn once per call, of shape (batch, features), and reused
  at every time step. SimpleRNN: one input mask and one recurrent mask. LSTM/GRU: with
  recurrent_dropout == 0, one input mask shared by all gates; with recurrent_dropout > 0, one
  input mask per gate and one recurrent mask per gate (4 for LSTM, 3 for GRU). The reference
  takes the masks explicitly, already scaled (kept entries 1/(1-rate), dropped 0).
"""

from __future__ import annotations

import numpy as np
import reference as ref

GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _per_gate(masks, n):
    """None, one mask shared by every gate, or a list of n masks -> list of n (or Nones)."""
    if masks is None:
        return [None] * n
    if isinstance(masks, (list, tuple)):
        assert len(masks) == n, f"{len(masks)} dropout masks for {n} gates"
        return [None if m is None else _f64(m) for m in masks]
    return [_f64(masks)] * n


def _mul(a, m):
    return a if m is None else a * m


# --------------------------------------------------------------------------------------------
# cells: forward (new states + cache) and backward (dx, dstates_prev, dweights)


class Cell:
    """One recurrent cell with Keras-layout weights.

    kind: "SimpleRNN" | "LSTM" | "GRU"; weights [kernel, recurrent_kernel(, bias)];
    dropout / recurrent_dropout: scaled masks (see module docstring), or None.
    """

    def __init__(self, kind, weights, *, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, reset_after=True, dropout_mask=None,
                 recurrent_dropout_mask=None):
        self.kind = kind
        self.g = GATES[kind]
        self.kernel = _f64(weights[0])
        self.rkernel = _f64(weights[1])
        self.use_bias = use_bias
        assert len(weights) == (3 if use_bias else 2), "weights: kernel, recurrent(, bias)"
        self.bias = _f64(weights[2]) if use_bias else None
        self.units = self.rkernel.shape[0]
        u, g = self.units, self.g
        assert self.kernel.shape[1] == g * u and self.rkernel.shape == (u, g * u)
        self.reset_after = reset_after
        if kind == "GRU" and use_bias:
            want = (2, 3 * u) if reset_after else (3 * u,)
            assert self.bias.shape == want, f"GRU bias {self.bias.shape}, expected {want}"
        elif use_bias:
            assert self.bias.shape == (g * u,)
        self.act = activation or "linear"
        self.ract = recurrent_activation or "linear"
        if kind == "SimpleRNN":
            self.dm = [None if dropout_mask is None else _f64(dropout_mask)]
            self.rm = [None if recurrent_dropout_mask is None else _f64(recurrent_dropout_mask)]
        else:
            self.dm = _per_gate(dropout_mask, g)
            self.rm = _per_gate(recurrent_dropout_mask, g)

    @property
    def n_states(self):
        return 2 if self.kind == "LSTM" else 1

    def _blk(self, w, j):
        u = self.units
        return w[..., j * u:(j + 1) * u]

    def zero_grads(self):
        gs = [np.zeros_like(self.kernel), np.zeros_like(self.rkernel)]
        if self.use_bias:
            gs.append(np.zeros_like(self.bias))
        return gs

    # ---- forward
    def forward(self, x, states):
        h = states[0]
        xs = [_mul(x, self.dm[j]) for j in range(self.g)]
        hs = [_mul(h, self.rm[j]) for j in range(self.g)]
        cache = dict(x=x, h=h, xs=xs, hs=hs)
        if self.kind == "SimpleRNN":
            z = xs[0] @ self.kernel + hs[0] @ self.rkernel
            if self.use_bias:
                z = z + self.bias
            cache["z"] = z
            hn = ref.activation(self.act, z)
            return [hn], cache
        if self.kind == "LSTM":
            c = states[1]
            zs = []
            for j in range(4):
                z = xs[j] @ self._blk(self.kernel, j) + hs[j] @ self._blk(self.rkernel, j)
                if self.use_bias:
                    z = z + self._blk(self.bias, j)
                zs.append(z)
            i = ref.activation(self.ract, zs[0])
            f = ref.activation(self.ract, zs[1])
            cc = ref.activation(self.act, zs[2])
            o = ref.activation(self.ract, zs[3])
            cn = f * c + i * cc
            ac = ref.activation(self.act, cn)
            hn = o * ac
            cache.update(c=c, zs=zs, i=i, f=f, cc=cc, o=o, cn=cn, ac=ac)
            return [hn, cn], cache
        # GRU
        xg, rg = [], []
        for j in range(3):
            a = xs[j] @ self._blk(self.kernel, j)
            if self.use_bias:
                a = a + self._blk(self.bias[0] if self.reset_after else self.bias, j)
            xg.append(a)
        for j in range(2 if not self.reset_after else 3):
            a = hs[j] @ self._blk(self.rkernel, j)
            if self.use_bias and self.reset_after:
                a = a + self._blk(self.bias[1], j)
            rg.append(a)
        zz, zr = xg[0] + rg[0], xg[1] + rg[1]
        z = ref.activation(self.ract, zz)
        r = ref.activation(self.ract, zr)
        if self.reset_after:
            zh = xg[2] + r * rg[2]
        else:
            zh = xg[2] + (r * hs[2]) @ self._blk(self.rkernel, 2)
        hh = ref.activation(self.act, zh)
        hn = z * h + (1.0 - z) * hh
        cache.update(zz=zz, zr=zr, zh=zh, z=z, r=r, hh=hh, rg=rg)
        return [hn], cache

    # ---- backward
    def backward(self, cache, dstates):
        """Given d(new states), return (dx, d(previous states), weight gradients)."""
        x, h, xs, hs = cache["x"], cache["h"], cache["xs"], cache["hs"]
        dK, dR = np.zeros_like(self.kernel), np.zeros_like(self.rkernel)
        dB = np.zeros_like(self.bias) if self.use_bias else None
        dx = np.zeros_like(x)
        dh = np.zeros_like(h)

        def through(j, dzx, dzh, xblk=True, hblk=True):
            """Accumulate gate j's pre-activation gradients (input part dzx, recurrent dzh)."""
            nonlocal dx, dh
            if xblk:
                self._blk(dK, j)[...] += xs[j].T @ dzx
                dx = dx + _mul(dzx @ self._blk(self.kernel, j).T, self.dm[j])
            if hblk:
                self._blk(dR, j)[...] += hs[j].T @ dzh
                dh = dh + _mul(dzh @ self._blk(self.rkernel, j).T, self.rm[j])

        if self.kind == "SimpleRNN":
            dz = ref.activation_vjp(self.act, cache["z"], dstates[0])
            through(0, dz, dz)
            if self.use_bias:
                dB += dz.sum(axis=0)
            return dx, [dh], [dK, dR] + ([dB] if self.use_bias else [])
        if self.kind == "LSTM":
            dhn, dcn = dstates
            i, f, cc, o, c, ac = (cache[k] for k in ("i", "f", "cc", "o", "c", "ac"))
            zs = cache["zs"]
            do = dhn * ac
            dc = dcn + ref.activation_vjp(self.act, cache["cn"], dhn * o)
            dgate = [dc * cc, dc * c, dc * i, do]
            names = [self.ract, self.ract, self.act, self.ract]
            for j in range(4):
                dz = ref.activation_vjp(names[j], zs[j], dgate[j])
                through(j, dz, dz)
                if self.use_bias:
                    self._blk(dB, j)[...] += dz.sum(axis=0)
            return dx, [dh, dc * f], [dK, dR] + ([dB] if self.use_bias else [])
        # GRU
        (dhn,) = dstates
        z, r, hh, rg = cache["z"], cache["r"], cache["hh"], cache["rg"]
        dh = dh + dhn * z
        dz_ = dhn * (h - hh)
        dhh = dhn * (1.0 - z)
        dzh = ref.activation_vjp(self.act, cache["zh"], dhh)
        if self.reset_after:
            dr = dzh * rg[2]
            drec_h = dzh * r
        else:
            rh = r * hs[2]
            self._blk(dR, 2)[...] += rh.T @ dzh
            drh = dzh @ self._blk(self.rkernel, 2).T
            dr = drh * hs[2]
            dh = dh + _mul(drh * r, self.rm[2])
        dzz = ref.activation_vjp(self.ract, cache["zz"], dz_)
        dzr = ref.activation_vjp(self.ract, cache["zr"], dr)
        through(0, dzz, dzz)
        through(1, dzr, dzr)
        if self.reset_after:
            through(2, dzh, drec_h)
        else:
            through(2, dzh, None, hblk=False)
        if self.use_bias:
            if self.reset_after:
                for j, (a, b) in enumerate(((dzz, dzz), (dzr, dzr), (dzh, drec_h))):
                    self._blk(dB[0], j)[...] += a.sum(axis=0)
                    self._blk(dB[1], j)[...] += b.sum(axis=0)
            else:
                for j, a in enumerate((dzz, dzr, dzh)):
                    self._blk(dB, j)[...] += a.sum(axis=0)
        return dx, [dh], [dK, dR] + ([dB] if self.use_bias else [])


# --------------------------------------------------------------------------------------------
# a recurrent layer over a sequence


def rnn_forward_backward(kind, x, weights, dy=None, *, return_sequences=False,
                         return_state=False, go_backwards=False, mask=None,
                         initial_state=None, zero_output_for_mask=False, _backward=True,
                         **cell_kw):
    """Run a SimpleRNN / LSTM / GRU layer (Keras semantics) and backpropagate through time.

    x: (batch, T, F). weights: Keras layout. mask: bool (batch, T) or None (True = keep).
    initial_state: list of (batch, U) arrays (zeros if None). dy: the output cotangent (ones if
    None); with return_state a list [d_output, d_h(, d_c)] (missing / None entries are zeros).

    Returns (y, dx, grads, d_initial_state): y is the output, or [output, h(, c)] with
    return_state; grads are the weight gradients in weight order.
    """
    x = _f64(x)
    b, t_len, _ = x.shape
    cell = Cell(kind, weights, **cell_kw)
    u = cell.units
    states = ([np.zeros((b, u)) for _ in range(cell.n_states)] if initial_state is None
              else [_f64(s).copy() for s in initial_state])
    assert len(states) == cell.n_states
    m_all = np.ones((b, t_len)) if mask is None else np.asarray(mask, bool).astype(np.float64)
    order = list(range(t_len - 1, -1, -1)) if go_backwards else list(range(t_len))
    caches, outputs = [], []
    for t in order:
        new, cache = cell.forward(x[:, t], states)
        m = m_all[:, t][:, None]
        prev_out = np.zeros((b, u)) if zero_output_for_mask else states[0]
        outputs.append(m * new[0] + (1.0 - m) * prev_out)
        states = [m * n + (1.0 - m) * s for n, s in zip(new, states)]
        caches.append(cache)
    seq = np.stack(outputs, axis=1) if t_len else np.zeros((b, 0, u))
    out = seq if return_sequences else seq[:, -1]
    y = [out] + [s.copy() for s in states] if return_state else out
    if not _backward:
        return y, None, None, None

    # ---- backward
    if return_state:
        dys = list(dy) if dy is not None else [None] * (1 + cell.n_states)
        dys += [None] * (1 + cell.n_states - len(dys))
        d_out = np.ones_like(out) if dys[0] is None else _f64(dys[0])
        dS = [np.zeros((b, u)) if d is None else _f64(d).copy() for d in dys[1:]]
    else:
        d_out = np.ones_like(out) if dy is None else _f64(dy)
        dS = [np.zeros((b, u)) for _ in range(cell.n_states)]
    dseq = np.zeros_like(seq)
    if return_sequences:
        dseq[...] = d_out
    else:
        dseq[:, -1] = d_out
    dx = np.zeros_like(x)
    grads = cell.zero_grads()
    for k in range(t_len - 1, -1, -1):
        t = order[k]
        m = m_all[:, t][:, None]
        do = dseq[:, k]
        d_new = [m * d for d in dS]
        d_new[0] = d_new[0] + m * do
        d_keep = [(1.0 - m) * d for d in dS]
        if not zero_output_for_mask:
            d_keep[0] = d_keep[0] + (1.0 - m) * do
        dxt, d_prev, gw = cell.backward(caches[k], d_new)
        dx[:, t] = dxt
        dS = [a + c for a, c in zip(d_keep, d_prev)]
        for acc, g in zip(grads, gw):
            acc += g
    return y, dx, grads, dS


def rnn_forward(kind, x, weights, **kw):
    return rnn_forward_backward(kind, x, weights, _backward=False, **kw)[0]


# --------------------------------------------------------------------------------------------
# Bidirectional


def bidirectional_forward(kind, x, fw_weights, bw_weights, **kw):
    return bidirectional_forward_backward(kind, x, fw_weights, bw_weights, _backward=False,
                                          **kw)[0]


def _merge(mode, a, b):
    if mode == "concat":
        return np.concatenate([a, b], axis=-1)
    if mode == "sum":
        return a + b
    if mode == "mul":
        return a * b
    if mode == "ave":
        return (a + b) / 2.0
    raise ValueError(mode)


def _merge_vjp(mode, a, b, dy):
    if mode == "concat":
        u = a.shape[-1]
        return dy[..., :u], dy[..., u:]
    if mode == "sum":
        return dy, dy
    if mode == "mul":
        return dy * b, dy * a
    if mode == "ave":
        return dy / 2.0, dy / 2.0
    raise ValueError(mode)


def bidirectional_forward_backward(kind, x, fw_weights, bw_weights, dy=None, *,
                                   merge_mode="concat", return_sequences=False, mask=None,
                                   _backward=True, **cell_kw):
    """Keras's Bidirectional(kind(..., return_sequences)) with merge_mode in concat / sum / mul /
    ave. The backward copy runs with go_backwards=True; both run with zero_output_for_mask equal
    to return_sequences; the backward sequence is flipped back to input time order before the
    merge. Returns (y, dx, grads_forward + grads_backward)."""
    zo = bool(return_sequences)
    kw = dict(return_sequences=return_sequences, mask=mask, zero_output_for_mask=zo, **cell_kw)
    yf = rnn_forward(kind, x, fw_weights, **kw)
    yb = rnn_forward(kind, x, bw_weights, go_backwards=True, **kw)
    yb_t = yb[:, ::-1] if return_sequences else yb
    y = _merge(merge_mode, yf, yb_t)
    if not _backward:
        return y, None, None
    dy = np.ones_like(y) if dy is None else _f64(dy)
    dyf, dyb_t = _merge_vjp(merge_mode, yf, yb_t, dy)
    dyb = dyb_t[:, ::-1] if return_sequences else dyb_t
    _, dxf, gf, _ = rnn_forward_backward(kind, x, fw_weights, dyf, **kw)
    _, dxb, gb, _ = rnn_forward_backward(kind, x, bw_weights, dyb, go_backwards=True, **kw)
    return y, dxf + dxb, gf + gb


# --------------------------------------------------------------------------------------------
# Embedding, Masking, TimeDistributed(Dense), MSE


def embedding_forward_backward(ids, embeddings, dy=None):
    """y = embeddings[ids]; d embeddings accumulates dy over repeated ids."""
    ids = np.asarray(ids).astype(np.int64)
    e = _f64(embeddings)
    assert ids.min(initial=0) >= 0 and ids.max(initial=0) < e.shape[0]
    y = e[ids]
    dy = np.ones_like(y) if dy is None else _f64(dy)
    de = np.zeros_like(e)
    np.add.at(de, ids.reshape(-1), dy.reshape(-1, e.shape[1]))
    return y, de


def masking_forward(x, mask_value=0.0):
    """Keras's Masking: (x with masked steps zeroed, mask); a step is kept when any feature
    differs from mask_value."""
    x = _f64(x)
    keep = np.any(x != mask_value, axis=-1)
    return np.where(keep[..., None], x, 0.0), keep


def time_distributed_dense_forward_backward(x, kernel, bias=None, activation_name=None,
                                            dy=None):
    x = _f64(x)
    b, t, f = x.shape
    y, dx, grads = ref.dense_forward_backward(
        x.reshape(b * t, f), kernel, bias, activation_name,
        None if dy is None else _f64(dy).reshape(b * t, -1))
    return y.reshape(b, t, -1), dx.reshape(b, t, f), grads


def mse_value_and_grad(y_true, y_pred):
    """Keras's "mse" with the default reduction: mean over the last axis, then over the batch
    (so the mean over every entry); returns (loss, dloss/dy_pred)."""
    y_true, y_pred = _f64(y_true), _f64(y_pred)
    d = y_pred - y_true
    return float(np.mean(d * d)), 2.0 * d / d.size


def orthonormal_rows_error(w):
    """max |W W^T - I| for a (U, G*U) recurrent kernel: Keras's Orthogonal initializer
    orthogonalises the whole (U, G*U) matrix (its U rows are orthonormal); the individual
    (U, U) gate blocks are *not* orthogonal."""
    w = _f64(w)
    return float(np.abs(w @ w.T - np.eye(w.shape[0])).max())


def rnn_dense_mse_grads(kind, x, y_true, weights, **rnn_kw):
    """Gradients of Keras's "mse" for Sequential([kind(U, **rnn_kw), Dense(K)]) (linear Dense)
    with weights [kernel, recurrent_kernel, bias, dense_kernel, dense_bias]; returns
    (loss, grads in weight order)."""
    rnn_w, (dk, db) = list(weights[:3]), weights[3:]
    h = rnn_forward(kind, x, rnn_w, **rnn_kw)
    y, _, _ = ref.dense_forward_backward(h, dk, db)
    loss, dy = mse_value_and_grad(y_true, y)
    _, dh, dense_grads = ref.dense_forward_backward(h, dk, db, None, dy)
    _, _, rnn_grads, _ = rnn_forward_backward(kind, x, rnn_w, dh, **rnn_kw)
    return loss, rnn_grads + dense_grads


def sgd_clipped_step(weights, grads, learning_rate, **clip):
    """One Keras SGD step (no momentum) after Keras's gradient clipping (clipnorm per variable,
    global_clipnorm over all, or clipvalue elementwise)."""
    clipped = ref.clip_gradients(grads, **clip)
    return [_f64(w) - learning_rate * g for w, g in zip(weights, clipped)]
