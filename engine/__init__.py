"""batsight engine: types, config, models, analytics, wire format, publisher, pipeline, CLI."""
