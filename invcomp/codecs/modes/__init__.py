"""One file per mode: inversion (0), VAE-GAN (1), layered (3), GC (4), SC (5), and auto."""
