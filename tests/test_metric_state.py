"""Keras's Metric API for custom loops: update_state / result / reset_state on the
accuracy metrics, MeanSquaredError, MeanAbsoluteError, Mean and Sum, against float64
NumPy references, and against what fit's engine reports for the same predictions."""

from __future__ import annotations

import numpy as np
import pytest

import ferrax
from ferrax import metrics, ops

R = np.random.default_rng(3)


def _weighted_mean(values, weights):
    values, weights = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    return (values * weights).sum() / weights.sum()


def _batches():
    probs = R.uniform(size=(2, 10, 4))
    ids = R.integers(0, 4, size=(2, 10))
    weights = R.uniform(0.1, 2.0, size=(2, 10))
    return probs, ids, weights


@pytest.mark.parametrize("metric, per_sample", [
    (metrics.SparseCategoricalAccuracy, lambda p, i: (p.argmax(-1) == i).astype(float)),
    (metrics.CategoricalAccuracy,
     lambda p, i: (p.argmax(-1) == i).astype(float)),
    (lambda: metrics.SparseTopKCategoricalAccuracy(k=2),
     lambda p, i: (np.argsort(-p, axis=-1)[:, :2] == i[:, None]).any(-1).astype(float)),
    (metrics.MeanSquaredError, lambda p, i: ((p - np.eye(4)[i]) ** 2).mean(-1)),
    (metrics.MeanAbsoluteError, lambda p, i: np.abs(p - np.eye(4)[i]).mean(-1)),
])
def test_a_metric_is_the_weighted_mean_of_its_per_sample_values(metric, per_sample):
    probs, ids, weights = _batches()
    m = metric()
    one_hot = not isinstance(m, (metrics.SparseCategoricalAccuracy,
                                 metrics.SparseTopKCategoricalAccuracy))
    for p, i, w in zip(probs, ids, weights):
        m.update_state(np.eye(4)[i] if one_hot else i, p.astype(np.float32), sample_weight=w)
    values = np.concatenate([per_sample(p, i) for p, i in zip(probs, ids)])
    assert float(m.result()) == pytest.approx(_weighted_mean(values, weights.ravel()),
                                              rel=1e-6)
    m.reset_state()
    assert float(m.result()) == 0.0


def test_binary_accuracy_thresholds_each_output():
    m = metrics.BinaryAccuracy(threshold=0.7)
    m.update_state([[1, 0], [1, 1]], [[0.8, 0.75], [0.6, 0.9]])
    assert float(m.result()) == pytest.approx(np.mean([[1, 0], [0, 1]]))


def test_the_engines_metrics_in_evaluate_agree_with_update_state():
    x = R.normal(size=(40, 5)).astype(np.float32)
    y = R.integers(0, 3, size=40)
    model = ferrax.Sequential([ferrax.Input((5,)), ferrax.layers.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy", "mse"])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    acc = metrics.get("accuracy")
    acc.update_state(y, model.predict(x, verbose=0))
    assert float(acc.result()) == pytest.approx(logs["accuracy"], rel=1e-6)


def test_mean_and_sum_track_values_with_weights():
    mean, total = metrics.Mean(name="loss"), metrics.Sum()
    for v, w in ((1.0, 1.0), (3.0, 3.0)):
        mean.update_state(v, sample_weight=w)
        total.update_state(v, sample_weight=w)
    assert float(mean.result()) == pytest.approx(2.5)
    assert float(total.result()) == pytest.approx(10.0)
    mean.update_state(ops.convert_to_tensor(np.array([2.0, 4.0])))
    assert float(mean.result()) == pytest.approx((10.0 + 6.0) / 6.0)
    assert [float(v) for v in mean.variables] == pytest.approx([16.0, 6.0])
    model = ferrax.Sequential([ferrax.Input((2,)), ferrax.layers.Dense(1)])
    model.compile(loss="mse", metrics=[metrics.Mean()])
    with pytest.raises(ValueError, match="Mean tracks values in a custom loop"):
        model.fit(np.ones((4, 2)), np.ones(4), verbose=0)


def test_a_metric_function_updates_from_its_result():
    def mean_error(y_true, y_pred):
        return ops.mean(y_pred - y_true, axis=-1)

    m = metrics.get(mean_error)
    m.update_state(np.zeros((2, 3)), np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]]),
                   sample_weight=[1.0, 3.0])
    assert float(m.result()) == pytest.approx((2.0 * 1 + 1.0 * 3) / 4)


# --- confusion metrics, against scikit-learn (an independent implementation) ---------
def _scores(n=3000, seed=0):
    r = np.random.default_rng(seed)
    y = r.integers(0, 2, n)
    return y, np.clip(0.35 * y + 0.65 * r.uniform(size=n), 0, 1)


def test_precision_and_recall_match_scikit_learn_over_batches_and_weights():
    from sklearn.metrics import precision_score, recall_score

    y, p = _scores()
    w = np.random.default_rng(1).uniform(0.2, 2.0, size=len(y))
    prec, rec = metrics.Precision(), metrics.Recall(thresholds=0.6)
    for part in np.array_split(np.arange(len(y)), 3):
        prec.update_state(y[part], p[part], sample_weight=w[part])
        rec.update_state(y[part], p[part], sample_weight=w[part])
    assert float(prec.result()) == pytest.approx(
        precision_score(y, p > 0.5, sample_weight=w), rel=1e-5)
    assert float(rec.result()) == pytest.approx(recall_score(y, p > 0.6, sample_weight=w),
                                                rel=1e-5)
    several = metrics.Precision(thresholds=[0.3, 0.7])
    several.update_state(y, p)
    np.testing.assert_allclose(np.asarray(several.result()),
                               [precision_score(y, p > t) for t in (0.3, 0.7)], rtol=1e-5)


@pytest.mark.parametrize("curve", ["ROC", "PR"])
def test_auc_matches_scikit_learn_within_its_threshold_grid(curve):
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, p = _scores(seed=2)
    auc = metrics.AUC(curve=curve)
    auc.update_state(y[:1000], p[:1000])
    auc.update_state(y[1000:], p[1000:])
    want = roc_auc_score(y, p) if curve == "ROC" else average_precision_score(y, p)
    assert float(auc.result()) == pytest.approx(want, abs=2e-3)
    perfect = metrics.AUC(curve=curve)
    perfect.update_state([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert float(perfect.result()) == pytest.approx(1.0, abs=1e-6)
    auc.reset_state()
    assert float(auc.result()) == 0.0


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
def test_f1_score_matches_scikit_learn(average):
    from sklearn.metrics import f1_score

    r = np.random.default_rng(4)
    ids, scores = r.integers(0, 3, 200), r.uniform(size=(200, 3))
    scores[np.arange(200), ids] += r.uniform(0, 0.6, 200)  # better than chance
    f1 = metrics.F1Score(average=average)
    f1.update_state(np.eye(3)[ids[:120]], scores[:120])
    f1.update_state(np.eye(3)[ids[120:]], scores[120:])
    want = f1_score(ids, scores.argmax(1), average=average)
    np.testing.assert_allclose(np.asarray(f1.result()), want, rtol=1e-5)


def test_confusion_metrics_are_refused_by_the_fused_batch_calls_and_check_arguments():
    model = ferrax.Sequential([ferrax.Input((2,)), ferrax.layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", metrics=[metrics.AUC()])
    with pytest.raises(ValueError, match="AUC is not run by the engine's fused loop"):
        model.train_on_batch(np.ones((4, 2)), np.ones(4))
    with pytest.raises(ValueError, match="curve must be 'ROC' or 'PR'"):
        metrics.AUC(curve="XY")
    with pytest.raises(ValueError, match=r"must both be \(batch, classes\)"):
        metrics.F1Score().update_state(np.ones(3), np.ones(3))


def test_confusion_metric_arguments_are_checked():
    with pytest.raises(ValueError, match="num_thresholds must be at least 2"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(NotImplementedError, match="only summation_method='interpolation'"):
        metrics.AUC(summation_method="minoring")
    with pytest.raises(ValueError, match="top_k must be an integer >= 1, got 0"):
        metrics.Precision(top_k=0)
    with pytest.raises(ValueError, match="class_id 4 needs predictions of shape"):
        metrics.Recall(class_id=4).update_state(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="2 label_weights for predictions of shape"):
        metrics.AUC(label_weights=[1.0, 2.0]).update_state(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="average must be None, 'micro', 'macro' or "
                                         "'weighted'"):
        metrics.F1Score(average="samples")


def _multilabel_data():
    r = np.random.default_rng(9)
    y = (r.uniform(size=(60, 3)) < 0.4).astype(np.float32)
    p = np.clip(0.5 * y + 0.6 * r.uniform(size=(60, 3)), 0, 1).astype(np.float32)
    return y, p


def test_precision_and_recall_of_one_class_match_sklearn():
    from sklearn.metrics import precision_score, recall_score

    y, p = _multilabel_data()
    for c in range(3):
        prec, rec = metrics.Precision(class_id=c), metrics.Recall(class_id=c)
        for m in (prec, rec):
            m.update_state(y[:30], p[:30])
            m.update_state(y[30:], p[30:])
        assert float(prec.result()) == pytest.approx(precision_score(y[:, c], p[:, c] > 0.5))
        assert float(rec.result()) == pytest.approx(recall_score(y[:, c], p[:, c] > 0.5))


def test_top_k_counts_each_samples_k_highest_predictions_as_positive():
    y, p = _multilabel_data()
    top2 = np.zeros(p.shape, bool)
    np.put_along_axis(top2, np.argsort(-p, axis=1)[:, :2], True, axis=1)
    prec, rec = metrics.Precision(top_k=2), metrics.Recall(top_k=2)
    for m in (prec, rec):
        m.update_state(y, p)
    hits = np.sum(top2 & (y > 0.5))
    assert float(prec.result()) == pytest.approx(hits / top2.sum())
    assert float(rec.result()) == pytest.approx(hits / np.sum(y > 0.5))
    # with class_id too: that class counts where it is among the top 2
    one = metrics.Precision(top_k=2, class_id=1)
    one.update_state(y, p)
    assert float(one.result()) == pytest.approx(np.sum(top2[:, 1] & (y[:, 1] > 0.5))
                                                / top2[:, 1].sum())


@pytest.mark.parametrize("label_weights", [None, [1.0, 2.0, 0.5]])
def test_multi_label_auc_averages_each_labels_area_as_sklearn(label_weights):
    from sklearn.metrics import roc_auc_score

    y, p = _multilabel_data()
    m = metrics.AUC(num_thresholds=2000, multi_label=True, label_weights=label_weights)
    m.update_state(y[:25], p[:25])
    m.update_state(y[25:], p[25:])
    areas = np.array([roc_auc_score(y[:, c], p[:, c]) for c in range(3)])
    w = np.ones(3) if label_weights is None else np.asarray(label_weights)
    assert float(m.result()) == pytest.approx(np.sum(areas * w) / w.sum(), abs=2e-3)


def test_label_weights_without_multi_label_weigh_each_labels_values():
    from sklearn.metrics import roc_auc_score

    y, p = _multilabel_data()
    w = np.array([1.0, 3.0, 0.0])
    m = metrics.AUC(num_thresholds=2000, label_weights=w)
    m.update_state(y, p)
    want = roc_auc_score(y.ravel(), p.ravel(), sample_weight=np.tile(w, len(y)))
    assert float(m.result()) == pytest.approx(want, abs=2e-3)
