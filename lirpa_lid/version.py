"""The package version (a leaf, so that modules recording it need not import the package)."""
__version__ = "0.1.0"
