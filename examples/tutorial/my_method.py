"""A tutorial estimator (docs/EXTENDING.md, step 1): central differences along random sign directions."""

import torch

from lrbench.estimators import Estimator, Option, register_estimator
from lrbench.estimators.base import set_grad


@register_estimator
class CentralDifference(Estimator):
    """ĝ = (1/n) Σ_k [(L(θ + εu_k) − L(θ − εu_k)) / 2ε] u_k with Rademacher u_k: E[u uᵀ] = I, so ĝ is
    unbiased for ∇L up to O(ε²) on a smooth loss. 2n + 1 forward passes, no backward pass."""

    name = "mine"                   # lower-case, not taken ('lrbench list estimators')
    description = "central differences along n random sign directions (tutorial)"
    options = {                     # 'seed' is declared by the base class
        "directions": Option(8, "int", "n: random directions per step", minimum=1),
        "eps": Option(1e-3, "float", "ε: half-step of the central difference", exclusive_minimum=0.0),
    }
    noise_scope = "weight"          # one direction for the whole batch: data-parallel ranks draw the same
    copies_option = "directions"    # the option that counts independent copies
    biased = False                  # E[ĝ] = ∇L (up to O(ε²)); True makes the check report the bias
    conformance_options = {"directions": 16, "eps": 1e-4}   # what check-estimator runs (float64)

    def _estimate(self, model, loss_fn, inputs, targets):
        # estimate() (the base class's template) calls this after clearing .grad and seeding torch's RNG
        # from (seed, step): same seed and calls -> same gradients, and state_dict resumes the stream.
        # Afterwards it checks that every trainable parameter got a gradient and counts the step.
        params = [p for p in model.parameters() if p.requires_grad]
        saved = [p.detach().clone() for p in params]
        eps, n = self.opts["eps"], self.opts["directions"]
        grads = [torch.zeros_like(p) for p in params]
        with torch.no_grad():
            clean = loss_fn(model(inputs), targets).mean()
            for _ in range(n):
                signs = [torch.randint(0, 2, p.shape).to(p) * 2 - 1 for p in params]
                losses = []
                for side in (1.0, -1.0):
                    for p, s, u in zip(params, saved, signs, strict=True):
                        p.copy_(s + side * eps * u)
                    losses.append(loss_fn(model(inputs), targets).mean())
                slope = (losses[0] - losses[1]) / (2 * eps)
                for g, u in zip(grads, signs, strict=True):
                    g.add_(u, alpha=float(slope) / n)
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)                  # parameters exactly as before
        for p, g in zip(params, grads, strict=True):
            set_grad(p, g)                  # replace .grad, never accumulate
        return clean, {"forward_passes": self.forward_passes_per_step(model, inputs.shape[0])}

    def forward_passes_per_step(self, model, batch_size):
        return float(2 * self.opts["directions"] + 1)
