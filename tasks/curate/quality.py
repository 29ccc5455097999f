"""The quality classifier, trained on the annotations: a random forest (phi-1) or a linear regression head
(FineWeb-Edu) on document embeddings (`curate.classifier`).

* `forest`: scikit-learn `RandomForestClassifier` (balanced classes) on the educational/low labels;
  quality = P(educational).
* `linear`: scikit-learn `Ridge` regressing the 0..10 score itself (FineWeb-Edu's regression head on
  embeddings); quality = 0.5 + (predicted score - label_threshold) / 10, clipped to [0, 1], so
  `quality_min` 0.5 keeps documents predicted at or above the label threshold (FineWeb-Edu kept >= 3 of 5).

`train` holds out `test_fraction` of the annotations (stratified) to measure precision / recall / F1 of
the educational class and a confusion matrix, then refits on all of them. The model is pickled to the store
under `curate-classifier/<key>/classifier.pkl` (key = hash of the annotations, embedder and head settings)
with its sha256 in the manifest; a later run with the same key loads it instead of training again.
`train_classifier` is the stage unit; it reads saved models only through `store.read_output`.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from primer.errors import PrimerError
from primer.settings.curate import CurateConfig
from primer.config import StoreConfig
from primer.store import ArtifactStore, content_key, open_store, sha256_bytes
from tasks.curate.embed import embedder_for
from tasks.curate.work import Work, fetch_docs

CLASSIFIER_VERSION = 2
CLASSES = ("low", "educational")
STAGE = "curate-classifier"


class TooFewAnnotations(PrimerError):
    """Not enough labelled examples of a class to train the quality classifier."""


@dataclass
class QualityModel:
    head: Any                         # a fitted RandomForestClassifier or Ridge
    kind: str                         # forest | linear
    embedder_spec: dict[str, Any]
    label_threshold: float
    metrics: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    sha256: str = ""

    def predict(self, features) -> np.ndarray:
        """Quality per row in [0, 1]: P(educational) (forest) or predicted score / 10 (linear)."""
        if features.shape[0] == 0:
            return np.zeros(0)
        if self.kind == "linear":  # 0.5 at the label threshold, +-0.1 per point of predicted score
            score = np.asarray(self.head.predict(features), dtype=np.float64)
            return np.clip(0.5 + (score - self.label_threshold) / 10.0, 0.0, 1.0)
        proba = self.head.predict_proba(features)
        classes = list(self.head.classes_)
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


def classifier_key(annotation_hash: str, embedder_spec: dict[str, Any], cfg: CurateConfig) -> str:
    return content_key(STAGE, CLASSIFIER_VERSION, annotation_hash, embedder_spec, cfg.classifier, cfg.rf_trees,
                       cfg.rf_max_depth, cfg.rf_max_features, cfg.linear_alpha, cfg.test_fraction, cfg.seed,
                       cfg.label_threshold, cfg.min_per_class)


def _make_head(cfg: CurateConfig):
    if cfg.classifier == "linear":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=cfg.linear_alpha)
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=cfg.rf_trees, max_depth=cfg.rf_max_depth or None,
                                  max_features=cfg.rf_max_features, class_weight="balanced",
                                  random_state=cfg.seed, n_jobs=1)


def train(features, scores: np.ndarray, cfg: CurateConfig, embedder_spec: dict[str, Any]) -> QualityModel:
    """Fit the configured head on (features, 0..10 scores); metrics from a stratified held-out split."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
    from sklearn.model_selection import train_test_split

    scores = np.asarray(scores, dtype=np.float64)
    labels = (scores >= cfg.label_threshold).astype(np.int64)
    target = scores if cfg.classifier == "linear" else labels
    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=cfg.test_fraction, random_state=cfg.seed, stratify=labels)
    held = QualityModel(_make_head(cfg).fit(features[tr], target[tr]), cfg.classifier, embedder_spec,
                        cfg.label_threshold)
    quality = held.predict(features[te])
    pred = (quality >= 0.5).astype(np.int64)
    p, r, f, s = precision_recall_fscore_support(labels[te], pred, labels=[0, 1], zero_division=0)
    cm = confusion_matrix(labels[te], pred, labels=[0, 1])
    metrics = {
        "head": cfg.classifier, "n_train": int(len(tr)), "n_test": int(len(te)),
        "accuracy": float(accuracy_score(labels[te], pred)),
        "per_class": {CLASSES[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                   "support": int(s[i])} for i in range(2)},
        "precision": float(p[1]), "recall": float(r[1]), "f1": float(f[1]),
        "confusion_matrix": {"labels": list(CLASSES), "rows_true_cols_pred": cm.tolist()},
        "class_counts": {CLASSES[i]: int((labels == i).sum()) for i in range(2)},
    }
    if cfg.classifier == "linear":
        metrics["score_mae"] = float(np.mean(np.abs(held.head.predict(features[te]) - scores[te])))
    final = _make_head(cfg).fit(features, target)
    return QualityModel(final, cfg.classifier, embedder_spec, cfg.label_threshold, metrics)


def save(store: ArtifactStore, model: QualityModel, key: str, extra: dict[str, Any]) -> QualityModel:
    out = store.output(STAGE, key)
    blob = pickle.dumps({"head": model.head, "kind": model.kind, "embedder_spec": model.embedder_spec,
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
    uri = store.uri(STAGE, key)
    if not store.exists(f"{uri}/manifest.json"):
        return None
    saved = store.read_output(uri, STAGE)
    blob = store.read_bytes(saved.file_uri("classifier.pkl"))
    if sha256_bytes(blob) != saved.manifest.get("sha256"):
        raise PrimerError(f"{uri}/classifier.pkl: sha256 does not match its manifest; delete {uri} to retrain")
    data = pickle.loads(blob)  # written by this code into the project's own store
    return QualityModel(data["head"], data["kind"], data["embedder_spec"], data["label_threshold"], data["metrics"],
                        key, saved.manifest["sha256"])


@lru_cache(maxsize=2)
def _cached(key: str, store_cfg_json: str) -> QualityModel:
    model = load(open_store(StoreConfig(**json.loads(store_cfg_json))), key)
    if model is None:
        raise PrimerError(f"curate: quality classifier {key} is not in the store; re-run curate")
    return model


def cached_model(store_cfg: StoreConfig, key: str) -> QualityModel:
    """The saved model, loaded once per process (finalize tasks of one run share it)."""
    return _cached(key, json.dumps(asdict(store_cfg), sort_keys=True))


def train_classifier(cfg: CurateConfig, teacher_cfg: Any, store_cfg: StoreConfig, key: str,
                     annotations: dict[str, Any]) -> dict[str, Any]:
    """Fit (or reuse) the classifier on the scored annotations. Returns its key, sha256, store ref and
    held-out metrics, plus `reused` (run facts, not content)."""
    store = open_store(store_cfg)
    rows = [r for r in annotations["rows"] if r["score"] is not None]
    failed = len(annotations["rows"]) - len(rows)
    scores = np.array([float(r["score"]) for r in rows], dtype=np.float64)
    check_counts((scores >= cfg.label_threshold).astype(np.int64), cfg.min_per_class, len(rows), failed)
    embedder = embedder_for(cfg, teacher_cfg)
    spec = embedder.spec()
    ann_hash = content_key(sorted((r["sha256"], r["score"]) for r in rows), length=64)
    model_key = classifier_key(ann_hash, spec, cfg)
    model = load(store, model_key)
    reused = model is not None
    if model is None:
        texts = [d["text"] for d in fetch_docs(store, Work(store, key), [(r["shard"], r["row"]) for r in rows])]
        model = train(embedder.embed(texts), scores, cfg, spec)
        model = save(store, model, model_key, {"annotations": len(rows), "annotator": annotations["annotator"],
                                               "embedder": spec, "head": cfg.classifier, "metrics": model.metrics})
    return {"model_key": model_key, "sha256": model.sha256, "metrics": model.metrics, "reused": reused,
            "ref": store.ref(store.uri(STAGE, model_key))}
