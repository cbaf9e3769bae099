"""lrbench-dfa: direct feedback alignment for lrbench, as an installable plugin.

* ``estimator.py`` — ``dfa``: every hidden layer learns from the output error sent through a fixed random
  matrix (Nøkland 2016), no backward pass through the network;
* ``tasks.py`` — ``digits-mlp3``: a three-hidden-layer tanh MLP on the 8×8 digits;
* ``papers/dfa-digits.yaml`` — a report putting DFA beside BP, ULR and ALR on that task.

Installed (``pip install -e examples/lrbench-dfa``), lrbench finds all three through the entry points in
pyproject.toml. Without installing, ``lrbench --plugin lrbench_dfa.plugin ...`` (this folder on the
Python path) imports ``plugin.py``, which registers them.
"""
