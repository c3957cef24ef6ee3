"""Type stub for ``ferrax._core``, the compiled Rust engine (sources: rust/python/src).

Float arrays passed in must be C-contiguous float32 NumPy arrays (the Python layer converts
them); feature arrays ``x`` may be uint8, float32 or float64. Every engine failure raises
ValueError; an internal panic raises RuntimeError.
"""

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

_F32: TypeAlias = npt.NDArray[np.float32]
_Features: TypeAlias = npt.NDArray[np.uint8] | npt.NDArray[np.float32] | npt.NDArray[np.float64]
# (loss sum, samples, [(metric sum, metric weight)], batches)
_Totals: TypeAlias = tuple[float, float, list[tuple[float, float]], int]
# (iterations, nadam u_product, slot names, [[slot array per slot] per weight])
_OptimizerState: TypeAlias = tuple[int, float, list[str], list[list[_F32]]]

__version__: str

class EagerOptimizer:
    """An optimizer's update rule and state for variables kept in Python."""

    iterations: int
    learning_rate: float

    def __init__(self, spec_json: str) -> None: ...
    def apply(self, values: Sequence[_F32], grads: Sequence[_F32 | None]) -> list[_F32]:
        """The variables' values after one step (a None gradient: left as it is)."""
    def apply_to_model(self, model: CoreModel, indices: Sequence[int],
                       grads: Sequence[_F32 | None]) -> None:
        """One step on weights of one model (their get_weights positions), in place."""

class CoreModel:
    """A built model owned by the engine: layers, weights, optimizer state."""

    def __init__(self, spec_json: str) -> None: ...
    def compile(self, spec_json: str) -> None: ...
    forward_runs: int

    def tape_forward(self, x: _F32, training: bool) -> _F32:
        """A custom loop's forward pass; activations kept for tape_backward."""
    def tape_backward(self, rows: int, dy: _F32,
                      loss_dys: Sequence[float] | None = None) -> list[_F32]:
        """The weights' gradients for the outputs' gradients dy (and those of the
        losses the calls added, loss_dys)."""
    def tape_backward_to_input(self, rows: int, dy: _F32,
                               loss_dys: Sequence[float] | None = None) -> list[_F32]:
        """tape_backward's gradients, then the input's, (rows, input size)."""
    def tape_replay(self, x: _F32, training: bool, keys: tuple[int, int]) -> None:
        """An earlier tape_forward again, with the random keys it had."""
    def tape_call_losses(self) -> list[float]:
        """The losses the layers' calls added (add_loss) in the last tape_forward."""
    random_keys: tuple[int, int]
    def weight_regularizers(self) -> list[tuple[float, float] | None]:
        """Each weight's (l1, l2) regularizer, or None."""
    def output_shapes(self) -> list[list[int]]:
        """Per-sample output shape of every layer."""
    def weight_info(self) -> list[tuple[int, str, list[int]]]:
        """(layer index, weight name, shape) for every weight, in order."""
    def get_weights(self) -> list[_F32]: ...
    def reset_states(self, layer: int | None = None) -> None: ...
    def set_layer_frozen(self, layer: int, frozen: bool) -> None: ...
    def weight_trainable(self) -> list[bool]:
        """Whether each weight is trained by the optimizer (moving statistics are not)."""
    def set_weights(self, weights: Sequence[_F32]) -> None:
        """Replace all weights; shapes are checked before anything changes."""
    @property
    def learning_rate(self) -> float | None:
        """The compiled optimizer's rate, or None when not compiled."""
    @learning_rate.setter
    def learning_rate(self, lr: float) -> None: ...
    @property
    def iterations(self) -> int: ...
    @property
    def step(self) -> int:
        """Training steps run so far (keys dropout masks); saved with the model."""
    @step.setter
    def step(self, step: int) -> None: ...
    def optimizer_state(self) -> _OptimizerState | None:
        """None when not compiled. Slot lists are empty before the first step."""
    def set_optimizer_state(
        self, iterations: int, u_product: float, slots: Sequence[Sequence[_F32]]
    ) -> None:
        """Restore what `optimizer_state` returned (slots may be empty: not started yet)."""
    def shuffled_order(self, n: int, epoch: int) -> npt.NDArray[np.uint32]:
        """The shuffled sample order of `epoch` (depends only on the seed)."""
    def train(
        self,
        x: _Features,
        y: _F32,
        sample_weight: _F32 | None,
        order: npt.NDArray[np.uint32],
        batch_size: int,
        totals: _Totals | None = None,
    ) -> _Totals:
        """Train on the samples `order`, batch by batch, adding to `totals`."""
    def evaluate(
        self,
        x: _Features,
        y: _F32,
        sample_weight: _F32 | None,
        start: int,
        end: int,
        batch_size: int,
        totals: _Totals | None = None,
    ) -> _Totals:
        """Score samples start..end in order, adding to `totals`."""
    def predict(self, x: _Features, start: int, end: int, batch_size: int) -> _F32:
        """Outputs for samples start..end, as a (rows, output size) float32 array."""

def first_non_finite(x: _Features) -> int | None:
    """Flat index of the first NaN or infinity of a C-contiguous array, or None."""

def panic_for_test(place: str) -> None:
    """Panics in the binding or the engine (tests: a panic is a RuntimeError)."""

def set_memory_limit(bytes: int) -> None:
    """Bytes one allocation, one model's weights or one batch may take (0: none)."""

def memory_limit() -> int:
    """The limit set_memory_limit set, in bytes."""

def num_threads() -> int:
    """Threads the engine uses (FERRAX_NUM_THREADS or the machine's cores)."""

def op_shape(name: str, attrs_json: str, shapes: Sequence[tuple[Sequence[int], bool]]
             ) -> tuple[list[int], bool]:
    """The result's shape of an op on inputs of these (shape, batched) descriptions."""

def op_eval(name: str, attrs_json: str, arrays: Sequence[_F32]) -> _F32:
    """An op on C-contiguous float32 arrays."""

def op_vjp(name: str, attrs_json: str, arrays: Sequence[_F32], y: _F32,
           dy: _F32) -> list[_F32]:
    """The gradients of an op's inputs given its result and the result's gradient."""

def layer_output_shape(spec_json: str, input_shapes: Sequence[Sequence[int]],
                       weight_budget: int | None = None
                       ) -> tuple[list[int], list[list[int]]]:
    """Per-sample output shape of a layer called on inputs of these per-sample shapes, and
    the shapes of the weights it builds for them."""

# --- single components, for tests (ferrax._testing) -------------------------------------
def merge_forward_backward(spec_json: str, xs: Sequence[_F32], dy: _F32
                           ) -> tuple[_F32, list[_F32]]:
    """(y, one input gradient per input) of one merge layer."""

def layer_forward_backward(
    spec_json: str,
    x: _F32,
    dy: _F32 | None,
    training: bool,
    weights: Sequence[_F32] | None,
    seed: int,
    include_regularization: bool,
    mask: npt.NDArray[np.bool_] | None = None,
) -> tuple[_F32, _F32, list[_F32], float, list[_F32]]:
    """(y, dx, weight gradients, regularization loss, weights after the pass) of one layer."""

def activation_forward_backward(spec_json: str, x: _F32, dy: _F32) -> tuple[_F32, _F32]:
    """(y, dx): y = f(x) and dx = dy·f'(x) over the last axis."""

def loss_value_and_grad(
    spec_json: str, y_true: _F32, y_pred: _F32, sample_weight: _F32 | None = None
) -> tuple[float, _F32]:
    """The batch loss and its gradient w.r.t. y_pred."""

def optimizer_run(
    spec_json: str, params: Sequence[_F32], grads_per_step: Sequence[Sequence[_F32]]
) -> list[list[_F32]]:
    """The parameters after each step."""

def initializer_sample(spec_json: str, shape: Sequence[int], seed: int) -> _F32: ...

# --- files (ferrax.saving) ----------------------------------------------------------------
def safetensors_dumps(tensors: Sequence[tuple[str, _F32]], metadata: dict[str, str]) -> bytes:
    """Serialise float32 tensors and string metadata to safetensors bytes."""

def safetensors_loads(data: bytes) -> tuple[list[tuple[str, _F32]], dict[str, str]]:
    """Parse safetensors bytes into (name, float32 array) pairs and the metadata."""
