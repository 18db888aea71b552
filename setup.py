"""setup.cfg holds everything, the packages included (``packages = find:``, so a new subpackage of ``invcomp`` ships in
the wheel without an edit). This file adds the one package that ``find:`` cannot see: the shipped weights, which live
in ``pretrained/`` of the checkout and install as ``invcomp.pretrained`` (``package_dir`` in setup.cfg)."""
from setuptools import setup
from setuptools.config.setupcfg import read_configuration

found = read_configuration("setup.cfg")["options"]["packages"]
setup(packages=[*found, "invcomp.pretrained"])
