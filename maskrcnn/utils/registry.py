"""Registry: a name -> module/builder table filled by decorators, looked up from config strings."""

__all__ = ["Registry"]


class Registry(dict):
    """A dict of name -> object with registration helpers and helpful errors.

    Register as a decorator::

        BACKBONES = Registry("BACKBONES")

        @BACKBONES.register("R-50-FPN")
        def build_resnet_fpn_backbone(cfg): ...

    or with a call: ``BACKBONES.register("R-50-FPN", build_resnet_fpn_backbone)``.
    Registering a name twice raises KeyError naming it; ``REG["unknown"]`` raises KeyError listing
    the registered names. ``in``, ``.get()``, iteration etc. behave as for a plain dict.
    """

    def __init__(self, name="Registry", *args, **kwargs):
        if not isinstance(name, str):  # Registry(dict_like) as with a plain dict
            args, name = (name,) + args, "Registry"
        super().__init__(*args, **kwargs)
        self.name = name

    def _add(self, module_name, module):
        if not isinstance(module_name, str):
            raise TypeError(f"{self.name}: names must be strings, got {module_name!r}")
        if module_name in self:
            raise KeyError(
                f"{self.name}: the name '{module_name}' is already registered (to {self[module_name]!r})"
            )
        self[module_name] = module

    def register(self, module_name, module=None):
        """Adds `module` under `module_name` and returns it; without `module`, returns a decorator."""
        if module is not None:
            self._add(module_name, module)
            return module

        def decorator(fn):
            self._add(module_name, fn)
            return fn

        return decorator

    def __missing__(self, key):
        raise KeyError(
            f"{self.name}: no entry named '{key}'. Registered names: {sorted(self.keys())}"
        )

    def __repr__(self):
        return f"{self.name}({sorted(self.keys())})"
