"""The error every parameter check raises, in a module of its own so that the modules that check
(params, steering, render) need not import each other for it."""


class ParamError(ValueError):
    """A render parameter is wrong; the message says which and why."""
