"""Seldon Deploy promotion operator (import package ``promotion_operator``)."""
