"""ltbench's version, in a module of its own so that any layer may read it (``ltbench/__init__.py``,
the package's face, exports the Python API and stands at the top of the layers)."""
__version__ = "0.1.0"
