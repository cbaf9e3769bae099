"""Import this module to register everything lrbench-dfa ships without installing it
(``lrbench --plugin lrbench_dfa.plugin``, or ``plugins: [lrbench_dfa.plugin]`` in a suite file)."""

from __future__ import annotations

from lrbench.estimators import register_estimator
from lrbench.reports.paper_spec import register_paper
from lrbench.tasks import register_task

from .estimator import DirectFeedbackAlignment
from .papers import spec_files
from .tasks import TASKS

register_estimator(DirectFeedbackAlignment)
for spec in TASKS:
    register_task(spec)
for path in spec_files():
    register_paper(path)
