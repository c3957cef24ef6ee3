"""Character-level text generation with an LSTM, trained on text every Python has.

    python examples/text_lstm.py [--epochs 20] [--seq-len 40] [--temperature 0.5 1.0]

The corpus is the Zen of Python (the standard library's `this` module, decoded) plus
ferrax's own README and LICENSE when they are next to this script. The model reads
`seq-len` characters (Embedding -> LSTM(128)) and predicts the next one
(Dense(vocab, softmax)). After training it prints the per-character loss against the
text's unigram entropy (what a model that ignores context would get), then samples new
text at each temperature.
"""

import argparse
import codecs
import contextlib
import io
import time
from pathlib import Path

import numpy as np

import ferrax as keras
from ferrax import layers


def corpus():
    # Importing `this` prints the Zen; we only want its (rot13-encoded) text.
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    text = codecs.decode(this.s, "rot13")
    root = Path(__file__).resolve().parent.parent
    for name in ("README.md", "LICENSE"):
        path = root / name
        if path.exists():
            text += "\n\n" + path.read_text(encoding="utf-8", errors="replace")
    return text


def windows(ids, seq_len, step):
    """(inputs, next ids): every `step`-th window of `seq_len` ids and the id after it."""
    starts = np.arange(0, len(ids) - seq_len, step)
    x = np.stack([ids[s:s + seq_len] for s in starts])
    y = ids[starts + seq_len]
    return x, y


def unigram_entropy(ids, vocab):
    p = np.bincount(ids, minlength=vocab) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def sample(model, seed_ids, length, temperature, rng):
    ids = list(seed_ids)
    seq_len = len(seed_ids)
    for _ in range(length):
        probs = model.predict(np.array([ids[-seq_len:]]), verbose=0)[0].astype(np.float64)
        logits = np.log(np.maximum(probs, 1e-12)) / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return ids[seq_len:]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seq-len", type=int, default=40)
    p.add_argument("--step", type=int, default=1)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--sample-length", type=int, default=300)
    p.add_argument("--temperature", type=float, nargs="+", default=[0.5, 1.0])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    text = corpus()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    vocab = len(chars)
    x, y = windows(ids, args.seq_len, args.step)
    entropy = unigram_entropy(ids, vocab)
    print(f"corpus: {len(text)} characters, {vocab} distinct; {len(x)} training windows; "
          f"unigram entropy {entropy:.3f} nats per character")

    model = keras.Sequential([
        layers.Input(shape=(args.seq_len,)),
        layers.Embedding(vocab, 32),
        layers.LSTM(args.units),
        layers.Dense(vocab, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.005),
                  loss="sparse_categorical_crossentropy")
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - start
    loss = history.history["loss"][-1]
    print(f"trained {args.epochs} epochs in {seconds:.1f} s: loss {loss:.3f} nats per "
          f"character vs unigram entropy {entropy:.3f} ({loss / entropy:.0%} of it)")

    rng = np.random.default_rng(args.seed)
    start_at = int(rng.integers(0, len(ids) - args.seq_len))
    seed_ids = ids[start_at:start_at + args.seq_len]
    seed_text = "".join(chars[i] for i in seed_ids)
    for temperature in args.temperature:
        generated = sample(model, seed_ids, args.sample_length, temperature, rng)
        print(f"\n--- temperature {temperature}, seed {seed_text!r}\n"
              + seed_text + "".join(chars[i] for i in generated))
    return loss, entropy


if __name__ == "__main__":
    main()
