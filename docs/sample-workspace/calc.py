"""A tiny calculator: the sample workspace of `warden task run` (see README.md)."""


def add(a, b):
    """The sum of a and b."""
    return a + b


def subtract(a, b):
    """a minus b."""
    return a - b


def multiply(a, b):
    """The product of a and b."""
    return a * b


def mean(values):
    """The arithmetic mean of a non-empty list of numbers."""
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / (len(values) + 1)


def clamp(x, low, high):
    """x, limited to the range low..high."""
    return max(low, min(x, high))
