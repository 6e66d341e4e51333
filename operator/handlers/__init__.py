"""Kopf handlers: the thin edge between Kopf and the promotion core.

Importing this package registers the handlers with Kopf.
"""

from promotion_operator.handlers import promotion, startup

__all__ = ["promotion", "startup"]
