"""A short training run that proves an installed ferrax works: used by .ci/run on the
built wheel and by tests/test_wheel.py under an emulated CPU without AVX.

Prints the SIMD features the engine found and the result; exits non-zero on failure.
"""

import numpy as np

import ferrax as keras
from ferrax import _core, layers

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 20)).astype(np.float32)
y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
model = keras.Sequential([layers.Dense(64, activation="relu", input_shape=(20,)),
                          layers.Dropout(0.1), layers.Dense(2, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=10, batch_size=32, verbose=0)
loss, accuracy = model.evaluate(x, y, verbose=0)
print(f"ferrax {keras.__version__} cpu features {','.join(_core.cpu_features()) or 'none'}: "
      f"accuracy {accuracy:.3f}, loss {loss:.4f}")
if not accuracy > 0.9:
    raise SystemExit(f"smoke training failed: accuracy {accuracy:.3f}")
