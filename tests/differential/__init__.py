"""Differential tests against Postfix's smtp-sink (a package, so that its ``conftest`` does not
clash with the repository's root ``conftest.py`` as a module name for mypy)."""
