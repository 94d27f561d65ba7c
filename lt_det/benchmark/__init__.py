"""The long-tail benchmark: every method trained and evaluated with one recipe on generated data.

``tools/benchmark.py`` is the command; the parts:

* :mod:`.data`: the benchmark's generated sets (the long-tailed set and the pretraining set);
* :mod:`.scaling`: LVIS's dataset-size-dependent thresholds carried to the generated set;
* :mod:`.methods`: the method list (``configs/benchmark/methods.yaml``), one entry per method;
* :mod:`.cells`: one training / evaluation run, cached under a key of its full config;
* :mod:`.table`: mean ± std over seeds, differences from baselines, markdown and JSON;
* :mod:`.plots`: the figures the papers use.
"""
