"""Components made from a description.

Every generator has a *description* apart from its hardware: a plain Python object
(``MVTUSpec``, ``SlidingWindowSpec``, ...) that checks the parameters and holds what
planners, benches and reports read (port layouts, cycles, memory geometry, latency).
The component is the hardware built from it, and is only made to be elaborated.

``Cls(spec=description)`` builds the hardware of a description; ``Cls(*args, **params)``
first makes the description ``Cls.Spec(*args, **params)``. Either way ``Cls.describe``
runs *before* the component object exists: Amaranth registers every elaboratable when
it is created and warns, when it is collected, about one that was never elaborated, so
bad parameters are refused while there is nothing yet to warn about.
"""

from __future__ import annotations

from amaranth.lib import wiring

__all__ = ["Described"]


class _DescribeFirst(type):
    """Calling the class describes first, then builds the component from the description."""

    def __call__(cls, *args, **params):
        spec, options = cls.describe(*args, **params)
        self = cls.__new__(cls, src_loc_at=1)          # warnings point at the caller
        self.__init__(spec, **options)
        return self


class Described(wiring.Component, metaclass=_DescribeFirst):
    """Base of a component built from its description ``spec`` (an instance of ``Spec``).

    The description's attributes read as the component's own (``window.depth`` is
    ``window.spec.depth``). Subclasses set ``Spec``, and override :meth:`describe` to take
    hardware-only options (checked there too), which reach ``__init__`` as keywords.
    """

    #: The description class.
    Spec: type = object

    @classmethod
    def describe(cls, *args, spec=None, **params) -> tuple[object, dict]:
        """``(description, hardware options)`` for ``Cls(*args, **params)``: the given
        ``spec``, or ``Cls.Spec(*args, **params)`` (which checks the parameters)."""
        if spec is None:
            return cls.Spec(*args, **params), {}
        if args or params:
            raise TypeError(f"give either a spec or the parameters of {cls.__name__}, not both")
        if not isinstance(spec, cls.Spec):
            raise TypeError(f"spec must be a {cls.Spec.__name__}, not {type(spec).__name__}")
        return spec, {}

    def __init__(self, spec):
        self.spec = spec
        super().__init__(spec.signature)

    def __getattr__(self, name):
        if name == "spec" or name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.spec, name)
