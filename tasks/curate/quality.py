"""The quality classifier: a random forest on document embeddings, trained on the annotations (phi-1).

`train` holds out `test_fraction` of the annotations (stratified) to measure precision / recall / F1 and a
confusion matrix, then refits on all of them. The fitted model is pickled to the store under
`curate-classifier/<key>/classifier.pkl` (key = hash of the annotations, embedder and forest settings) with
its sha256 in the manifest; a later run with the same key loads it instead of training again.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from primer.errors import PrimerError
from primer.store import ArtifactStore, content_key, sha256_bytes

CLASSIFIER_VERSION = 1
CLASSES = ("low", "educational")


class TooFewAnnotations(PrimerError):
    """Not enough labelled examples of a class to train the quality classifier."""


@dataclass
class QualityModel:
    forest: Any
    embedder_spec: dict[str, Any]
    label_threshold: float
    metrics: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    sha256: str = ""

    def predict(self, features) -> np.ndarray:
        """P(educational) per row."""
        if features.shape[0] == 0:
            return np.zeros(0)
        proba = self.forest.predict_proba(features)
        classes = list(self.forest.classes_)
        return proba[:, classes.index(1)] if 1 in classes else np.zeros(features.shape[0])


def check_counts(labels: np.ndarray, min_per_class: int, scored: int, failed: int) -> None:
    counts = {name: int((labels == i).sum()) for i, name in enumerate(CLASSES)}
    for name, n in counts.items():
        if n < min_per_class:
            raise TooFewAnnotations(
                f"curate: too few annotations of class {name!r} to train the quality classifier "
                f"({n} < curate.min_per_class={min_per_class}; classes: {counts}; {scored} scored, {failed} "
                f"without a usable score). Annotate more documents (raise curate.annotate_n), move "
                f"curate.label_threshold, or check the annotator's answers.")


def classifier_key(annotation_hash: str, embedder_spec: dict[str, Any], cfg) -> str:
    return content_key("curate-classifier", CLASSIFIER_VERSION, annotation_hash, embedder_spec, cfg.rf_trees,
                       cfg.rf_max_depth, cfg.test_fraction, cfg.seed, cfg.label_threshold, cfg.min_per_class)


def train(features, labels: np.ndarray, cfg, embedder_spec: dict[str, Any]) -> QualityModel:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
    from sklearn.model_selection import train_test_split

    def forest():
        return RandomForestClassifier(n_estimators=cfg.rf_trees, max_depth=cfg.rf_max_depth or None,
                                      class_weight="balanced", random_state=cfg.seed, n_jobs=1)

    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=cfg.test_fraction, random_state=cfg.seed, stratify=labels)
    held = forest().fit(features[tr], labels[tr])
    pred = held.predict(features[te])
    p, r, f, s = precision_recall_fscore_support(labels[te], pred, labels=[0, 1], zero_division=0)
    cm = confusion_matrix(labels[te], pred, labels=[0, 1])
    metrics = {
        "n_train": int(len(tr)), "n_test": int(len(te)),
        "accuracy": float(accuracy_score(labels[te], pred)),
        "per_class": {CLASSES[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                   "support": int(s[i])} for i in range(2)},
        "precision": float(p[1]), "recall": float(r[1]), "f1": float(f[1]),
        "confusion_matrix": {"labels": list(CLASSES), "rows_true_cols_pred": cm.tolist()},
        "class_counts": {CLASSES[i]: int((labels == i).sum()) for i in range(2)},
    }
    final = forest().fit(features, labels)
    return QualityModel(final, embedder_spec, cfg.label_threshold, metrics)


def save(store: ArtifactStore, model: QualityModel, key: str, extra: dict[str, Any]) -> QualityModel:
    out = store.output("curate-classifier", key)
    blob = pickle.dumps({"forest": model.forest, "embedder_spec": model.embedder_spec,
                         "label_threshold": model.label_threshold, "metrics": model.metrics},
                        protocol=pickle.HIGHEST_PROTOCOL)
    with out.open_local("classifier.pkl") as local:
        local.write_bytes(blob)
    out.write_json("metrics.json", model.metrics)
    out.commit({"kind": "quality-classifier", "sha256": sha256_bytes(blob), **extra})
    model.key, model.sha256 = key, sha256_bytes(blob)
    return model


def load(store: ArtifactStore, key: str) -> QualityModel | None:
    """The saved classifier with this key, or None; verifies the pickle against the manifest's sha256."""
    uri = store.uri("curate-classifier", key)
    if not store.exists(f"{uri}/manifest.json"):
        return None
    manifest = store.read_json(f"{uri}/manifest.json")
    blob = store.read_bytes(f"{uri}/classifier.pkl")
    if sha256_bytes(blob) != manifest.get("sha256"):
        raise PrimerError(f"{uri}/classifier.pkl: sha256 does not match its manifest; delete {uri} to retrain")
    data = pickle.loads(blob)  # written by this code into the project's own store
    return QualityModel(data["forest"], data["embedder_spec"], data["label_threshold"], data["metrics"], key,
                        manifest["sha256"])
