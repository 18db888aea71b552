"""Generative compression at full resolution (GC) and selective compression (SC), after Agustsson et al. 2019.

- :mod:`.model`: the encoder E (x -> C channels at /16), the learned-centre quantiser (soft-to-hard, Mentzer et al.
  2018) and the generator G (residual blocks at /16, four upsampling stages); config, save and load.
- :mod:`.discriminator`: the multi-scale (3 scales, pix2pixHD) PatchGAN discriminator, for training only.
- :mod:`.gridcode`: context tables for the integer grids that a file holds (the symbols, the SC mask, the semantic
  map) and their coding with the shared range coder (:mod:`invcomp.coding.rangecoder`).
- :mod:`.tiles`: padding to /16, and tiled encode and decode with bounded memory at any size.
- :mod:`.masks` and :mod:`.semantic`: SC's preserved regions and label maps.
- :mod:`.synth`: SC's code synthesiser (what the generator draws where the code was dropped).
- :mod:`.store`: the shipped models (registry rows of kind ``gc`` and ``sc``).

The codec modes are :mod:`invcomp.codecs.modes.gc` (mode 4) and :mod:`invcomp.codecs.modes.sc` (mode 5).
"""
