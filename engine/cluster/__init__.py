"""``batsight cluster``: the pipeline scaled out over a Ray cluster behind one ZeroMQ endpoint (DESIGN §9).

:mod:`engine.cluster.driver` partitions the sources over Ray actors (:mod:`engine.cluster.worker`),
each an ordinary pipeline; :mod:`engine.cluster.forwarder` relays their messages to one XPUB
endpoint with the topics and ``seq`` of a single-machine run. Ray is an optional dependency
(``pip install -e '.[ray]'``): only the driver imports it, when a cluster run starts.
"""
