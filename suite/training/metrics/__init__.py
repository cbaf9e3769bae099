"""Measurements of a training run, one module each:

* :mod:`suite.training.metrics.memory` — peak training-step memory (live tensor bytes; CUDA allocator peak);
* :mod:`suite.training.metrics.throughput` — the training clock, samples/s, forward passes and FLOPs per step;
* :mod:`suite.training.metrics.gradient_quality` — the estimate against BP on the same batch and parameters;
* :mod:`suite.training.metrics.time_to_target` — first time the validation accuracy reaches the task's target.
"""
