"""Metrics built on counts of true and false positives (Keras's confusion metrics):
Precision, Recall, F1Score and AUC, for custom loops (`update_state`, `result`,
`reset_state`). Their state is counts, so they are kept here, not in the engine."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrax._typing import Config
from ferrax.metrics import Metric, _array
from ferrax.tensor import Tensor

_EPSILON = 1e-7


class _Counting(Metric):
    """Base: true/false positives and negatives at one or more thresholds."""

    def __init__(self, kind: str, name: str | None, thresholds: Any) -> None:
        super().__init__(kind, name)
        self.thresholds = np.atleast_1d(np.asarray(0.5 if thresholds is None else thresholds,
                                                   np.float64))
        self.reset_state()

    def reset_state(self) -> None:
        n = len(self.thresholds)
        self.tp, self.fp, self.fn, self.tn = (np.zeros(n) for _ in range(4))

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        truth = _array(y_true).astype(np.float64)
        pred = _array(y_pred).astype(np.float64)
        truth = truth.reshape(pred.shape) if truth.size == pred.size else truth
        w = np.ones(pred.shape) if sample_weight is None else np.broadcast_to(
            np.asarray(_array(sample_weight), np.float64).reshape(
                (-1,) + (1,) * (pred.ndim - 1)), pred.shape)
        positive = (truth > 0.5).ravel()
        wv = w.ravel()
        above = pred.ravel()[None, :] > self.thresholds[:, None]
        self.tp += (above & positive) @ wv
        self.fp += (above & ~positive) @ wv
        self.fn += (~above & positive) @ wv
        self.tn += (~above & ~positive) @ wv

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
    other count (`_misses`), at each threshold."""

    def __init__(self, kind: str, name: str, thresholds: Any, top_k: Any,
                 class_id: Any) -> None:
        _only_defaults(name, top_k=top_k, class_id=class_id)
        self._one = thresholds is None or np.ndim(thresholds) == 0
        super().__init__(kind, name, thresholds)

    def _misses(self) -> np.ndarray:
        raise NotImplementedError

    def result(self) -> Tensor:
        value = _ratio(self.tp, self.tp + self._misses())
        return Tensor(np.float32(value[0]) if self._one else value.astype(np.float32))


class Precision(_RatioAtThresholds):
    """The fraction of predicted positives (above `thresholds`) that are positive.

    Args:
        thresholds: A threshold, or a list of them (one result each); 0.5 by default.
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
        thresholds: A threshold, or a list of them (one result each); 0.5 by default.
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
        _only_defaults(name, multi_label=multi_label or None, num_labels=num_labels,
                       label_weights=label_weights)
        self.curve, self.from_logits = curve, from_logits
        inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        edges = [0.0 - _EPSILON] + inner + [1.0 + _EPSILON]
        super().__init__("auc", name, edges if thresholds is None else
                         [0.0 - _EPSILON, *thresholds, 1.0 + _EPSILON])

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        pred = _array(y_pred).astype(np.float64)
        if self.from_logits:
            pred = 1 / (1 + np.exp(-pred))
        super().update_state(y_true, pred, sample_weight)

    def result(self) -> Tensor:
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        if self.curve == "ROC":
            # the trapezoids between consecutive thresholds of (false positive rate, recall)
            x, y = _ratio(fp, fp + tn), _ratio(tp, tp + fn)
            return Tensor(np.float32(np.sum((x[:-1] - x[1:]) * (y[:-1] + y[1:]) / 2)))
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
        return Tensor(np.float32(np.sum(_ratio(increment, np.maximum(tp[1:] + fn[1:], 0)))))


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


def _only_defaults(owner: str, **args: Any) -> None:
    given = [k for k, v in args.items() if v is not None]
    if given:
        raise NotImplementedError(f"metric '{owner}': {', '.join(given)} not supported yet")
