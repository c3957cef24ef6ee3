"""Metrics built on counts of true and false positives (Keras's confusion metrics):
Precision, Recall, F1Score and AUC, with Keras's Metric API (`update_state`, `result`,
`reset_state`); fit and evaluate update them step by step. Their state is counts, so
they are kept here, not in the engine."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrax._typing import Config
from ferrax.metrics import Metric, _array
from ferrax.tensor import Tensor

_EPSILON = 1e-7


class _Counting(Metric):
    """Base: true/false positives and negatives at one or more thresholds; per label
    (the last axis) when `per_label`, else over all values."""

    def __init__(self, kind: str, name: str | None, thresholds: Any,
                 per_label: bool = False) -> None:
        super().__init__(kind, name)
        self.thresholds = np.atleast_1d(np.asarray(0.5 if thresholds is None else thresholds,
                                                   np.float64))
        self.per_label = per_label
        self._labels: int | None = None
        self.reset_state()

    def reset_state(self) -> None:
        shape: tuple[int, ...] = (len(self.thresholds),)
        if self.per_label and self._labels is not None:
            shape += (self._labels,)
        self.tp, self.fp, self.fn, self.tn = (np.zeros(shape) for _ in range(4))

    def _prepared(self, truth: np.ndarray, pred: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The values counted (a subclass picks a class or the top k)."""
        return truth, pred

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        truth = _array(y_true).astype(np.float64)
        pred = _array(y_pred).astype(np.float64)
        truth = truth.reshape(pred.shape) if truth.size == pred.size else truth
        w = np.ones(pred.shape) if sample_weight is None else np.broadcast_to(
            np.asarray(_array(sample_weight), np.float64).reshape(
                (-1,) + (1,) * (pred.ndim - 1)), pred.shape)
        w = w * self._label_weights(pred)
        truth, pred = self._prepared(truth, pred)
        if w.shape != pred.shape:
            w = w[..., 0] if pred.ndim < w.ndim else np.broadcast_to(w, pred.shape)
        if self.per_label:
            labels = pred.shape[-1] if pred.ndim > 1 else 1
            if self._labels is None:
                self._labels = labels
                self.reset_state()
            elif labels != self._labels:
                raise ValueError(f"metric '{self.name}': {labels} labels, but it counted "
                                 f"{self._labels} so far")
            flat = (lambda a: a.reshape(-1, labels))  # noqa: E731
        else:
            flat = (lambda a: a.reshape(-1, 1))  # noqa: E731
        positive, wv, p = flat(truth > 0.5), flat(w), flat(pred)
        # (thresholds, values, labels): above each threshold?
        above = p[None, :, :] > self.thresholds[:, None, None]
        counts = [((above & positive) * wv).sum(axis=1), ((above & ~positive) * wv).sum(axis=1),
                  ((~above & positive) * wv).sum(axis=1), ((~above & ~positive) * wv).sum(1)]
        if not self.per_label:
            counts = [c[:, 0] for c in counts]
        self.tp, self.fp, self.fn, self.tn = (a + c for a, c in zip(
            (self.tp, self.fp, self.fn, self.tn), counts))

    def _label_weights(self, pred: np.ndarray) -> Any:
        return 1.0

    # fit and evaluate with it in compile's metrics run step by step (update_state)
    _in_engine = False

    def _core_spec(self, y_rank: int, y_last: int, out_last: int, loss: object) -> Config:
        raise ValueError(f"metric '{self.name}': {type(self).__name__} is not run by the "
                         f"engine's fused loop (train_on_batch / test_on_batch); fit and "
                         f"evaluate update it step by step")

    @property
    def variables(self) -> list[Any]:
        from ferrax.variables import Variable

        return [Variable(a.astype(np.float32), name=f"{self.name}/{k}")
                for k, a in (("true_positives", self.tp), ("false_positives", self.fp),
                             ("false_negatives", self.fn), ("true_negatives", self.tn))]


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


class _RatioAtThresholds(_Counting):
    """Base of Precision and Recall: true positives over true positives plus the
    other count (`_misses`), at each threshold; with `top_k` only each sample's k
    highest predictions count as predicted positive, with `class_id` only that class."""

    def __init__(self, kind: str, name: str, thresholds: Any, top_k: Any,
                 class_id: Any) -> None:
        for arg, value in (("top_k", top_k), ("class_id", class_id)):
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, (int, np.integer)) or value < (1 if arg == "top_k" else 0)):
                raise ValueError(f"metric '{name}': {arg} must be an integer >= "
                                 f"{1 if arg == 'top_k' else 0}, got {value!r}")
        self.top_k, self.class_id = top_k, class_id
        self._one = thresholds is None or np.ndim(thresholds) == 0
        if thresholds is None and top_k is not None:
            thresholds = -np.inf  # (the top k are the predicted positives)
        super().__init__(kind, name, thresholds)

    def _prepared(self, truth: np.ndarray, pred: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        if self.top_k is not None:
            # all but each sample's k highest predictions (ties: the first) to -inf
            order = np.argsort(-pred, axis=-1, kind="stable")
            kept = np.zeros(pred.shape, bool)
            np.put_along_axis(kept, order[..., :self.top_k], True, axis=-1)
            pred = np.where(kept, pred, -np.inf)
        if self.class_id is not None:
            if pred.ndim < 2 or self.class_id >= pred.shape[-1]:
                raise ValueError(f"metric '{self.name}': class_id {self.class_id} needs "
                                 f"predictions of shape (batch, more than {self.class_id} "
                                 f"classes), got {pred.shape}")
            truth, pred = truth[..., self.class_id], pred[..., self.class_id]
        return truth, pred

    def _misses(self) -> np.ndarray:
        raise NotImplementedError

    def result(self) -> Tensor:
        value = _ratio(self.tp, self.tp + self._misses())
        return Tensor(np.float32(value[0]) if self._one else value.astype(np.float32))


class Precision(_RatioAtThresholds):
    """The fraction of predicted positives (above `thresholds`) that are positive.

    Args:
        thresholds: A threshold, or a list of them (one result each); 0.5 by default
            (with `top_k`, none: the k highest are the predicted positives).
        top_k: Count only each sample's k highest predictions as positive.
        class_id: Score only this class (the last axis).
        name: Its name in the logs.

    Example:

    >>> m = ferrax.metrics.Precision()
    >>> m.update_state([0, 1, 1, 1], [1, 0, 1, 1])
    >>> float(m.result())   # 2 of the 3 predicted positives: 0.667
    """

    def __init__(self, thresholds: Any = None, top_k: Any = None, class_id: Any = None,
                 name: str = "precision", dtype: Any = None) -> None:
        super().__init__("precision", name, thresholds, top_k, class_id)

    def _misses(self) -> np.ndarray:
        return self.fp


class Recall(_RatioAtThresholds):
    """The fraction of positives predicted positive (above `thresholds`).

    Args:
        thresholds: A threshold, or a list of them (one result each); 0.5 by default
            (with `top_k`, none: the k highest are the predicted positives).
        top_k: Count only each sample's k highest predictions as positive.
        class_id: Score only this class (the last axis).
        name: Its name in the logs.

    Example:

    >>> m = ferrax.metrics.Recall()
    >>> m.update_state([0, 1, 1, 1], [1, 0, 1, 1])
    >>> float(m.result())   # 2 of the 3 positives found: 0.667
    """

    def __init__(self, thresholds: Any = None, top_k: Any = None, class_id: Any = None,
                 name: str = "recall", dtype: Any = None) -> None:
        super().__init__("recall", name, thresholds, top_k, class_id)

    def _misses(self) -> np.ndarray:
        return self.fn


class AUC(_Counting):
    """The area under the ROC (or precision-recall) curve, from counts at
    `num_thresholds` thresholds spread over [0, 1], as Keras computes it.

    Args:
        num_thresholds: How many thresholds (at least 2).
        curve: "ROC" or "PR".
        name: Its name in the logs.
        multi_label: Each label (the last axis) its own curve, the areas averaged;
            otherwise all values count as one curve.
        label_weights: Per label: with multi_label the weights of the average, else
            weights of each label's values in the counts.
        from_logits: Whether the predictions are logits.

    Example:

    >>> m = ferrax.metrics.AUC()
    >>> m.update_state([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> float(m.result())   # about 0.75
    """

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str = "auc",
                 thresholds: Any = None, multi_label: bool = False, num_labels: Any = None,
                 label_weights: Any = None, from_logits: bool = False,
                 dtype: Any = None) -> None:
        if num_thresholds < 2:
            raise ValueError(f"AUC '{name}': num_thresholds must be at least 2, got "
                             f"{num_thresholds}")
        if curve not in ("ROC", "PR"):
            raise ValueError(f"AUC '{name}': curve must be 'ROC' or 'PR', got {curve!r}")
        if summation_method != "interpolation":
            raise NotImplementedError(f"AUC '{name}': only summation_method='interpolation' "
                                      f"is supported")
        self.curve, self.from_logits = curve, from_logits
        self.multi_label = bool(multi_label)
        self.label_weights = None if label_weights is None else np.asarray(
            label_weights, np.float64).reshape(-1)
        inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        edges = [0.0 - _EPSILON] + inner + [1.0 + _EPSILON]
        super().__init__("auc", name, edges if thresholds is None else
                         [0.0 - _EPSILON, *thresholds, 1.0 + _EPSILON],
                         per_label=self.multi_label)

    def _label_weights(self, pred: np.ndarray) -> Any:
        # (with multi_label they weigh each label's area instead, in result)
        if self.label_weights is None or self.multi_label:
            return 1.0
        if pred.ndim < 2 or pred.shape[-1] != len(self.label_weights):
            raise ValueError(f"AUC '{self.name}': {len(self.label_weights)} label_weights "
                             f"for predictions of shape {pred.shape}")
        return self.label_weights

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        pred = _array(y_pred).astype(np.float64)
        if self.from_logits:
            pred = 1 / (1 + np.exp(-pred))
        super().update_state(y_true, pred, sample_weight)

    def result(self) -> Tensor:
        areas = _areas(self.curve, self.tp, self.fp, self.fn, self.tn)
        if not self.multi_label:
            return Tensor(np.float32(areas))
        if self.label_weights is None:
            return Tensor(np.float32(np.mean(areas)))
        w = self.label_weights
        return Tensor(np.float32(np.sum(areas * w) / np.sum(w)))


def _areas(curve: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray
           ) -> np.ndarray:
    """The area under the curve from counts at the thresholds (axis 0; a label each
    along axis 1 when there are several)."""
    if curve == "ROC":
        # the trapezoids between consecutive thresholds of (false positive rate, recall)
        x, y = _ratio(fp, fp + tn), _ratio(tp, tp + fn)
        return np.asarray(np.sum((x[:-1] - x[1:]) * (y[:-1] + y[1:]) / 2, axis=0))
    # precision-recall: precision interpolated linearly in the counts between
    # thresholds (Davis and Goadrich), as Keras does
    d_tp = tp[:-1] - tp[1:]
    p = tp + fp
    d_p = np.maximum(p[:-1] - p[1:], 0)
    slope = _ratio(d_tp, d_p)
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = np.where(both, _ratio(p[:-1], np.maximum(p[1:], 0)), 1.0)
    log_ratio = np.log(np.where(ratio > 0, ratio, 1.0))
    increment = slope * (d_tp + intercept * log_ratio)
    return np.asarray(np.sum(_ratio(increment, np.maximum(tp[1:] + fn[1:], 0)), axis=0))


class F1Score(Metric):
    """F1 per class (or averaged) for one-hot targets of shape (batch, classes).

    Args:
        average: None (one score per class), "micro", "macro" or "weighted".
        threshold: Predictions above it count as positive; None: each row's largest.
        name: Its name in the logs.

    Example:

    >>> f1 = ferrax.metrics.F1Score(average="macro")
    >>> f1.update_state(np.eye(3)[[0, 1, 2]], [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    >>> float(f1.result())   # about 0.56
    """

    def __init__(self, average: str | None = None, threshold: float | None = None,
                 name: str = "f1_score", dtype: Any = None) -> None:
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(f"F1Score '{name}': average must be None, 'micro', 'macro' or "
                             f"'weighted', got {average!r}")
        super().__init__("f1_score", name)
        self.average, self.threshold = average, threshold
        self.reset_state()

    def reset_state(self) -> None:
        self.tp = self.fp = self.fn = self.support = None

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        truth = _array(y_true).astype(np.float64)
        pred = _array(y_pred).astype(np.float64)
        if pred.ndim != 2 or truth.shape != pred.shape:
            raise ValueError(f"F1Score '{self.name}': y_true and y_pred must both be "
                             f"(batch, classes), got {truth.shape} and {pred.shape}")
        if self.threshold is None:
            hit = pred == pred.max(axis=1, keepdims=True)
        else:
            hit = pred > self.threshold
        w = np.ones(len(pred)) if sample_weight is None else \
            np.asarray(_array(sample_weight), np.float64).reshape(-1)
        w = w[:, None]
        counts = [(hit * truth * w).sum(0), (hit * (1 - truth) * w).sum(0),
                  ((1 - hit) * truth * w).sum(0), (truth * w).sum(0)]
        if self.tp is None:
            self.tp, self.fp, self.fn, self.support = counts
        else:
            self.tp, self.fp, self.fn, self.support = (
                a + b for a, b in zip((self.tp, self.fp, self.fn, self.support), counts))

    def result(self) -> Tensor:
        if self.tp is None:
            return Tensor(np.float32(0.0))
        tp, fp, fn = self.tp, self.fp, self.fn
        if self.average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        precision, recall = tp / (tp + fp + _EPSILON), tp / (tp + fn + _EPSILON)
        f1 = 2 * precision * recall / (precision + recall + _EPSILON)
        if self.average == "macro":
            f1 = f1.mean()
        elif self.average == "weighted":
            f1 = (f1 * self.support).sum() / (self.support.sum() + _EPSILON)
        return Tensor(np.asarray(f1, np.float32))

    _in_engine = False

    def _core_spec(self, y_rank: int, y_last: int, out_last: int, loss: object) -> Config:
        raise ValueError(f"metric '{self.name}': F1Score is not run by the engine's fused "
                         f"loop (train_on_batch / test_on_batch); fit and evaluate update it "
                         f"step by step")
