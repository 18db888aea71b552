"""Bytes on disk: the framing, the .ivc container, layered and photo files, the decode budget and what a file holds.
The only place that knows the magic bytes."""
