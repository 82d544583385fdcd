"""batsight sources: PyAV files, URLs and cameras, the built-in default input, reconnect policy."""
