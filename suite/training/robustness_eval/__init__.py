"""Robustness under attack: white-box FGSM / PGD-L∞ / PGD-L2, transfer from a BP surrogate, corruptions.

    from lrbench.suite.training.robustness_eval import robustness_metrics
    metrics = robustness_metrics(model, x_test, y_test, dataset="mnist", surrogate=bp_model, seed=0)

returns the ``metrics.robustness`` object of docs/RESULTS.md. Attacks: ``attacks.py``; corruptions:
``corruptions.py``; the protocol (subset, grids, transfer): ``evaluate.py``.
"""

from lrbench.suite.training.robustness_eval.attacks import fgsm, pgd
from lrbench.suite.training.robustness_eval.corruptions import CORRUPTIONS, corrupt
from lrbench.suite.training.robustness_eval.evaluate import (
    DEFAULT_SETTINGS,
    EPS_L2,
    EPS_LINF,
    robustness_metrics,
)

__all__ = ["CORRUPTIONS", "DEFAULT_SETTINGS", "EPS_L2", "EPS_LINF", "corrupt", "fgsm", "pgd", "robustness_metrics"]
