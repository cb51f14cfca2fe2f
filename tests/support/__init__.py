"""Types the tests name: classes to subclass, build or annotate with, and constants.

Fixtures live in the ``conftest.py`` files and are taken as arguments; a test
imports from here only what it needs as a type (pytest cannot hand over a
class to subclass or annotate with) or a constant. Nothing here is a test.
"""
