"""Packages are found, never listed by hand: a new subpackage of ``invcomp`` ships in the wheel without an edit here.

The shipped weights live in ``pretrained/`` of the checkout and install as the package ``invcomp.pretrained``
(``package_dir`` in setup.cfg); everything else, metadata and package data included, is in setup.cfg.
"""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["invcomp", "invcomp.*"]), "invcomp.pretrained"])
