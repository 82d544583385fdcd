"""batsight sinks: the ZeroMQ subscriber runtime and the sink plugins (jsonl, console, report)."""
