"""Benchmark invcomp against classic codecs on the same pixels, at fixed qualities and at equal bytes.

``codecs`` (the classic codecs: real libraries behind one contract), ``kmeans`` (the K=4 palette
reference codec), ``search`` (the equal-bytes quality search), ``run`` (coding and measuring: the
per-image rows), ``report`` (CompressAI JSON, CSV, markdown) and ``plots`` (RD plots). The
``invcomp bench`` command (:mod:`invcomp.bench_cli`) composes them and writes the files.
"""
