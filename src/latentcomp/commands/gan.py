"""Placeholder: commands registered by a later change."""


def register(app) -> None:
    pass
