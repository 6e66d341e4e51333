"""Kopf handlers: the thin edge between Kopf and the promotion core."""
