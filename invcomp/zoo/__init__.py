"""Names -> files: the registry of shipped and user models, their weights, priors and model cards."""

DEFAULT_MODEL = "dcgan-utkface64"  # the model of `invcomp encode --mode inversion` and of load_codec()
