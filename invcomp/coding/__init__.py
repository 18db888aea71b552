"""Pure entropy coding, byte-exact on every machine: quantisers, the integer tables (priors) of the latents, the range
and rANS coders, Elias codes and the context coding of integer grids."""
