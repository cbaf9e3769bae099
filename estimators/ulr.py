"""ULR: unified likelihood ratio — Gaussian (or Laplace) noise on module outputs, one local VJP per call.

    ĝ_m = Σ_calls VJP_θm( f_m, X, (ℓ − b) ⊙ score(ε) / (σ·N) ),   score(ε) = ε (Gaussian), √2·sign(ε) (Laplace)

Unbiased for the gradient of the noise-smoothed loss E_ε[L]. Every option lives in the shared engine
(``estimators.lr_engine``): copies, sigma, injection, prefix_sharing, antithetic, qmc, baseline,
adaptive_sigma, noise, chunk, noise_storage (stored | seed: bit-identical, zero storage), fail_mode.
"""

from __future__ import annotations

from .lr_engine import LR_OPTIONS, LikelihoodRatioEstimator
from .registry import register_estimator


@register_estimator
class UnifiedLikelihoodRatio(LikelihoodRatioEstimator):
    name = "ulr"
    description = "likelihood ratio with noise on module outputs (forward-only, one local VJP per module call)"
    options = dict(LR_OPTIONS)
    encoding = "full"
