"""invcomp: GAN-inversion image compression."""
__version__ = "0.1.0"
