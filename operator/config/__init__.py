"""Configuration: the settings and the credentials files."""
