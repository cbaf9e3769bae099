"""``lrbench bench``: the estimators against their physical floor, as ratios measured in one process.

One module per measurement: ``speed`` (time ratios), ``lr_memory`` (``lr_mem_over_bp``), ``noise_bits``
(``alr_noise_bits_per_element``), ``xconv_memory`` (``xconv_net_mem_saving``), ``harness``
(``harness_overhead``); ``timing``, ``floor``, ``models``, ``step_memory`` are their tools and
``runner`` puts them together (``run_bench``) with the machine description and the targets.
"""

from lrbench.suite.bench.headlines import TARGETS, run_bench
from lrbench.suite.bench.sizes import BenchConfig

__all__ = ["BenchConfig", "TARGETS", "run_bench"]
