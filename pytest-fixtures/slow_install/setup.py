import time

from setuptools import setup

# Slow on purpose: the install step is still running when the test kills the controller.
time.sleep(6)

setup(name="slowpkg", version="0.1", packages=["slowpkg"])
