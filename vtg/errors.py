"""Errors raised for bad user input: the CLI prints them as one clear message (no traceback) and exits 2."""


class UserError(Exception):
    """An error caused by the user's input (file, flag, config key, data line); the message says what to fix."""
