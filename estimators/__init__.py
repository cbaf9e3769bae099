"""lrbench.estimators: gradient estimators behind one interface (depends on torch only).

    from lrbench.estimators import get_estimator
    est = get_estimator("ulr", copies=64, sigma=0.01)
    loss, logs = est.estimate(model, loss_fn, inputs, targets)   # sets p.grad for every trainable p
"""

from .base import Estimator, EstimatorError, Option, UnsupportedModuleError
from .registry import ESTIMATORS, estimator_class, get_estimator, list_estimators, register_estimator

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "EstimatorError",
    "Option",
    "UnsupportedModuleError",
    "estimator_class",
    "get_estimator",
    "list_estimators",
    "register_estimator",
]
