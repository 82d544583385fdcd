"""Keypoint model plugins (entry-point group ``batsight.models``)."""
