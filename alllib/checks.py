"""Argument checks shared by alllib's public entry points: one clear message per mistake."""

import numbers


def integer(name, value, minimum):
    """`value` as an int if it is an integer (Python or NumPy, not bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {expected}; received {value!r}.")
    return int(value)


def number(name, value, low=0.0, high=None, high_inclusive=False):
    """`value` as a float if it is a real number in [low, high] (or [low, high))."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and value >= low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        if high is None:
            expected = "a non-negative number" if low == 0 else f"a number >= {low:g}"
        else:
            expected = f"a number in [{low:g}, {high:g}{']' if high_inclusive else ')'}"
        raise ValueError(f"`{name}` must be {expected}; received {value!r}.")
    return float(value)
