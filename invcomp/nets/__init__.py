"""Small decoder-side networks that cost no bytes (e.g. the 64-px -> 256-px generative upsampler)."""
