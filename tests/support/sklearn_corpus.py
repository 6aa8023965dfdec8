"""scikit-learn models exported by skl2onnx, the way users export them: a corpus of classic-ML
ONNX graphs (ai.onnx.ml ops, string inputs and labels, ZipMap outputs, contrib Tokenizer).

Each case is fitted on seeded synthetic data in well under a second. :func:`build` returns the
ONNX model, the inputs to check it on (by graph input name) and what scikit-learn itself
predicts there: labels or values, and class probabilities where the estimator has them.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

FEATURES = 5


@dataclass
class Case:
    model: Any  # onnx.ModelProto
    feeds: dict[str, np.ndarray]
    predicted: np.ndarray  # labels, values or transformed rows, as scikit-learn gives them
    probabilities: Optional[np.ndarray] = None


def _numbers(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, FEATURES)).astype(np.float32)


def _classes(x: np.ndarray, labels: str) -> np.ndarray:
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 0.8).astype(int)
    if labels == "strings":
        return np.array(["low", "mid", "high"])[y]
    if labels == "binary":
        return (y > 0).astype(int)
    return np.array([3, 7, 9])[y]


def _target(x: np.ndarray) -> np.ndarray:
    return (x @ np.linspace(-1.0, 1.0, FEATURES) + 0.1 * np.sin(3 * x[:, 0])).astype(np.float32)


def _numeric(make: Callable[[], Any], kind: str, labels: str = "ints", zipmap: bool = True,
             with_nan: bool = False) -> Callable[[], Case]:
    def build() -> Case:
        from skl2onnx import to_onnx

        x, x_test = _numbers(240, 0), _numbers(23, 1)
        if with_nan:
            for arr, seed in ((x, 2), (x_test, 3)):
                arr[np.random.default_rng(seed).random(arr.shape) < 0.1] = np.nan
        estimator = make()
        if kind == "classifier":
            estimator.fit(x, _classes(np.nan_to_num(x), labels))
        elif kind == "regressor":
            estimator.fit(x, _target(np.nan_to_num(x)))
        else:
            estimator.fit(x)
        options = None if zipmap or kind != "classifier" else {id(estimator): {"zipmap": False}}
        model = to_onnx(estimator, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}, options=options)
        predicted = estimator.transform(x_test) if kind == "transform" else estimator.predict(x_test)
        proba = estimator.predict_proba(x_test) if kind == "classifier" and hasattr(estimator, "predict_proba") else None
        return Case(model, {model.graph.input[0].name: x_test}, np.asarray(predicted), proba)
    return build


def _categories() -> Case:
    """String categories one-hot encoded (an unseen one among the checked rows), then a forest."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType

    colours = np.array(["red", "green", "blue", "teal"])
    rng = np.random.default_rng(0)
    train = colours[rng.integers(0, 4, (240, 2))].astype(object)
    test = colours[rng.integers(0, 4, (19, 2))].astype(object)
    test[0, 1] = "purple"  # unseen in training: all zeros
    y = ((train[:, 0] == "red") | (train[:, 1] == "blue")).astype(int)
    estimator = make_pipeline(OneHotEncoder(handle_unknown="ignore"), RandomForestClassifier(12, max_depth=5, random_state=0))
    estimator.fit(train, y)
    model = to_onnx(estimator, initial_types=[("colours", StringTensorType([None, 2]))],
                    target_opset={"": 17, "ai.onnx.ml": 3})
    return Case(model, {"colours": test}, estimator.predict(test), estimator.predict_proba(test))


def _text() -> Case:
    """TfidfVectorizer (StringNormalizer, com.microsoft Tokenizer, TfIdfVectorizer) and a linear model."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType

    docs = ["the cat sat on the mat", "dogs and cats are pets", "the quick brown fox", "a dog barked at the cat",
            "foxes are quick", "pets need care", "the mat is red"] * 12
    y = np.array([0, 1, 0, 1, 0, 1, 0] * 12)
    test = np.array([["the cat and the dog"], ["quick fox"], ["nothing here"], ["pets are cats"], ["RED MAT"]], dtype=object)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2))
    estimator = make_pipeline(vectorizer, LogisticRegression(max_iter=300))
    estimator.fit(docs, y)
    options = {TfidfVectorizer: {"tokenexp": r"\w+"}, id(estimator.steps[-1][1]): {"zipmap": False}}
    model = to_onnx(estimator, initial_types=[("text", StringTensorType([None, 1]))],
                    target_opset={"": 17, "ai.onnx.ml": 3}, options=options)
    return Case(model, {"text": test}, estimator.predict(test[:, 0]), estimator.predict_proba(test[:, 0]))


def _estimators() -> dict[str, Callable[[], Case]]:
    from sklearn import (calibration, cluster, decomposition, discriminant_analysis, ensemble, linear_model,
                         naive_bayes, neighbors, preprocessing, svm, tree)
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        # ZipMap outputs (skl2onnx's default), labels of each kind
        "forest-zipmap-strings": _numeric(lambda: ensemble.RandomForestClassifier(10, max_depth=5, random_state=0),
                                          "classifier", "strings"),
        "logistic-zipmap-ints": _numeric(lambda: make_pipeline(StandardScaler(), linear_model.LogisticRegression()),
                                         "classifier", "ints"),
        "boosting-binary": _numeric(lambda: ensemble.GradientBoostingClassifier(n_estimators=15, random_state=0),
                                    "classifier", "binary", zipmap=False),
        "svc-probabilities": _numeric(lambda: svm.SVC(probability=True, random_state=0), "classifier", "strings",
                                      zipmap=False),
        "svc-binary-decision": _numeric(lambda: svm.SVC(kernel="poly", degree=2, random_state=0), "classifier",
                                        "binary", zipmap=False),
        "kneighbors-strings": _numeric(lambda: neighbors.KNeighborsClassifier(5), "classifier", "strings"),
        "imputed-logistic": _numeric(lambda: make_pipeline(SimpleImputer(), linear_model.LogisticRegression()),
                                     "classifier", "ints", zipmap=False, with_nan=True),
        "tree-regressor": _numeric(lambda: tree.DecisionTreeRegressor(max_depth=6, random_state=0), "regressor"),
        "svr": _numeric(lambda: svm.SVR(), "regressor"),
        "one-class-svm": _numeric(lambda: svm.OneClassSVM(gamma="scale"), "outliers"),
        "categories-forest": _categories,
        "text-tfidf-logistic": _text,
        # the wider sweep (-m slow)
        "svc-linear-kernel": _numeric(lambda: svm.SVC(kernel="linear", probability=True, random_state=0), "classifier",
                                      "ints", zipmap=False),
        "svc-sigmoid-kernel": _numeric(lambda: svm.SVC(kernel="sigmoid", coef0=0.5, random_state=0), "classifier",
                                       "strings", zipmap=False),
        "nu-svc": _numeric(lambda: svm.NuSVC(probability=True, nu=0.3, random_state=0), "classifier", "binary"),
        "linear-svc": _numeric(lambda: svm.LinearSVC(random_state=0), "classifier", "strings"),
        "extra-trees": _numeric(lambda: ensemble.ExtraTreesClassifier(10, max_depth=5, random_state=0), "classifier"),
        "adaboost": _numeric(lambda: ensemble.AdaBoostClassifier(n_estimators=8, random_state=0), "classifier", "binary"),
        "bagging": _numeric(lambda: ensemble.BaggingClassifier(tree.DecisionTreeClassifier(max_depth=3), n_estimators=5,
                                                               random_state=0), "classifier"),
        "calibrated": _numeric(lambda: calibration.CalibratedClassifierCV(linear_model.LogisticRegression(), cv=3),
                               "classifier", "strings"),
        "gaussian-nb": _numeric(naive_bayes.GaussianNB, "classifier"),
        "lda": _numeric(discriminant_analysis.LinearDiscriminantAnalysis, "classifier", "strings"),
        "forest-regressor": _numeric(lambda: ensemble.RandomForestRegressor(10, max_depth=5, random_state=0),
                                     "regressor"),
        "boosting-regressor": _numeric(lambda: ensemble.GradientBoostingRegressor(n_estimators=20, random_state=0),
                                       "regressor"),
        "kneighbors-regressor": _numeric(lambda: neighbors.KNeighborsRegressor(4), "regressor"),
        "isolation-forest": _numeric(lambda: ensemble.IsolationForest(n_estimators=10, random_state=0), "outliers"),
        "kmeans": _numeric(lambda: cluster.KMeans(4, n_init=3, random_state=0), "outliers"),
        "pca": _numeric(lambda: decomposition.PCA(3), "transform"),
        "power-transformer": _numeric(preprocessing.PowerTransformer, "transform"),
        "kbins-onehot": _numeric(lambda: preprocessing.KBinsDiscretizer(4, encode="onehot-dense"), "transform"),
        "polynomial": _numeric(lambda: preprocessing.PolynomialFeatures(2), "transform"),
    }


CASES = ("forest-zipmap-strings", "logistic-zipmap-ints", "boosting-binary", "svc-probabilities", "svc-binary-decision",
         "kneighbors-strings", "imputed-logistic", "tree-regressor", "svr", "one-class-svm", "categories-forest",
         "text-tfidf-logistic")


SLOW_CASES = ("svc-linear-kernel", "svc-sigmoid-kernel", "nu-svc", "linear-svc", "extra-trees", "adaboost", "bagging",
              "calibrated", "gaussian-nb", "lda", "forest-regressor", "boosting-regressor", "kneighbors-regressor",
              "isolation-forest", "kmeans", "pca", "power-transformer", "kbins-onehot", "polynomial")


def build(name: str) -> Case:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _estimators()[name]()
