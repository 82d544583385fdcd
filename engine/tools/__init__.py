"""Development tools, not used at run time: classifier training and benchmarks.

Each module is a script run as ``python -m engine.tools.<name>``: :mod:`~engine.tools.train_shots`
(writes ``engine/data/shot_classifier_v2.json``), :mod:`~engine.tools.bench_analytics` and
:mod:`~engine.tools.bench_keypointrcnn`. Nothing in the runtime modules imports this package.
"""
