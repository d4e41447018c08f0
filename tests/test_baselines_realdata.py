"""Expression baselines on the real GM12878 chr11 DeepChrome-like tensor (doc §9 figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from hicmix.baselines.deepchrome import DeepChrome
from hicmix.baselines.linear import LinearExpression

REALDATA = Path(__file__).resolve().parents[2] / "shared/data/realdata_v1"
NPZ = REALDATA / "expression/deepchrome_like_GM12878_chr11.npz"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not NPZ.exists(), reason="needs ../shared/data/realdata_v1"),
]

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def genes() -> dict[str, np.ndarray]:
    data = np.load(NPZ)
    x = data["X"].astype(np.float32)
    assert x.shape == (1046, 50, 10)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, data["y_bin"]))
    return {"x": x, "y_bin": data["y_bin"], "y_reg": data["y_reg"], "folds": folds}


def test_logistic_reference_matches_the_documented_auroc(genes: dict) -> None:
    x, y = genes["x"], genes["y_bin"]
    aurocs, pearsons = [], []
    for train, test in genes["folds"]:
        clf = LinearExpression("binary").fit(x[train], y[train])
        aurocs.append(roc_auc_score(y[test], clf.predict_proba(x[test])))
        reg = LinearExpression("regression").fit(x[train], genes["y_reg"][train])
        pearsons.append(np.corrcoef(genes["y_reg"][test], reg.predict(x[test]))[0, 1])
    # doc §9: 0.929 ± 0.018 (5-fold, seed 0); ridge Pearson 0.781
    assert np.mean(aurocs) > 0.88
    assert np.mean(aurocs) == pytest.approx(0.929, abs=0.01)
    assert np.mean(pearsons) == pytest.approx(0.781, abs=0.02)


def test_deepchrome_cnn_trains_on_real_marks(genes: dict) -> None:
    x, y = genes["x"], genes["y_bin"]
    train, test = genes["folds"][0]
    train, val = train_test_split(train, test_size=0.15, random_state=0, stratify=y[train])
    model = DeepChrome("binary", epochs=8, seed=0, device="cpu")
    model.fit(x[train], y[train], x[val], y[val])
    assert roc_auc_score(y[test], model.predict_proba(x[test])) > 0.85
