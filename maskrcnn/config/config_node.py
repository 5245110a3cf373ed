"""CfgNode: yacs's config node with errors that point at the offending key.

Behaves like `yacs.config.CfgNode` (same merge/type-check/freeze/clone semantics), except:

* merging a YAML file, another config or a command-line list that contains a key the tree does not
  have raises ``KeyError`` naming the full dotted key, where it came from, and the closest valid keys
  (difflib over the flattened key list, plus keys with the same leaf name elsewhere in the tree);
* type mismatches (a ``ValueError`` from yacs that already names the key) also say where the value
  came from;
* an int merged into a float key becomes a float (``MODEL.RPN.MIN_SIZE: 0`` into the default 0.0;
  yacs itself refuses int -> float);
* merging into a frozen node raises ``AttributeError`` (yacs only guards attribute assignment);
* keys can be restricted to a set of values with :meth:`register_value_choices`; merges that put
  another value there raise ``ValueError`` naming the key and the allowed values.

Every node of a tree built from this class is of this class, so ``cfg.clone()`` keeps it.
"""
import difflib

from yacs.config import CfgNode as _YacsCfgNode

__all__ = ["CfgNode"]

_CHOICES = "__value_choices__"


def _flatten_keys(node, prefix=""):
    """All dotted keys of `node`, leaves and inner nodes, in insertion order."""
    keys = []
    for name, value in node.items():
        full_key = prefix + name
        keys.append(full_key)
        if isinstance(value, dict):
            keys.extend(_flatten_keys(value, full_key + "."))
    return keys


class CfgNode(_YacsCfgNode):
    """A yacs CfgNode whose merge errors name the key, its source and likely intended keys."""

    # ------------------------------------------------------------------ merging
    def merge_from_file(self, cfg_filename):
        """Merge the YAML (or Python) config file `cfg_filename` into this node."""
        with open(cfg_filename, "r") as handle:
            other = self.load_cfg(handle)
        self._merge_tree(other, source=str(cfg_filename))

    def merge_from_other_cfg(self, cfg_other):
        """Merge another config tree (CfgNode or nested dict) into this node."""
        self._merge_tree(cfg_other, source=None)

    def merge_from_list(self, cfg_list):
        """Merge ["KEY.PATH", value, ...] pairs (values as strings or Python objects) into this node."""
        cfg_list = list(cfg_list)
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Config override list has an odd number of items ({len(cfg_list)}); it must "
                f"alternate KEY VALUE, got {cfg_list}"
            )
        source = "the command-line/list overrides"
        self._check_not_frozen(source)
        unknown = [key for key in cfg_list[0::2] if not self._key_path_exists(str(key))]
        self._raise_unknown(unknown, source)
        for i in range(0, len(cfg_list), 2):
            cfg_list[i + 1] = self._widened(self._value_at(str(cfg_list[i])), cfg_list[i + 1])
        self._with_source(lambda: super(CfgNode, self).merge_from_list(cfg_list), source)
        self._check_choices(source)

    def _merge_tree(self, other, source):
        if type(other) is not type(self):
            other = type(self)(other)
        self._check_not_frozen(source)
        unknown = []
        self._collect_unknown(other, self, "", unknown)
        self._raise_unknown(unknown, source)
        self._widen_ints(other, self)
        self._with_source(lambda: super(CfgNode, self).merge_from_other_cfg(other), source)
        self._check_choices(source)

    @classmethod
    def _widened(cls, current, value):
        """`value` (a Python object or a string yacs would decode) as a float when it is an int
        going into a float key; otherwise unchanged."""
        if not isinstance(current, float):
            return value
        decoded = cls._decode_cfg_value(value) if isinstance(value, str) else value
        return float(decoded) if type(decoded) is int else value

    def _widen_ints(self, incoming, node):
        for name, value in incoming.items():
            if name not in node:
                continue
            if isinstance(value, dict) and isinstance(node[name], _YacsCfgNode):
                self._widen_ints(value, node[name])
            else:
                incoming[name] = self._widened(node[name], value)

    def _value_at(self, full_key):
        node = self
        for name in full_key.split("."):
            if not isinstance(node, _YacsCfgNode) or name not in node:
                return None  # a deprecated or renamed key: yacs handles it
            node = node[name]
        return node

    def _check_not_frozen(self, source):
        # yacs merges by item assignment, which its freeze does not guard; refuse here instead.
        if self.is_frozen():
            where = f" from {source}" if source else ""
            raise AttributeError(f"Cannot merge{where} into a frozen config; call defrost() first")

    @staticmethod
    def _with_source(merge, source):
        try:
            merge()
        except ValueError as error:
            if source is None:
                raise
            raise ValueError(f"{error} (in {source})") from None

    # ------------------------------------------------------------ unknown keys
    def _is_tolerated(self, full_key):
        """Deprecated keys are skipped by yacs; renamed keys get yacs's own rename error."""
        return self.key_is_deprecated(full_key) or self.key_is_renamed(full_key)

    def _collect_unknown(self, incoming, node, prefix, unknown):
        for name, value in incoming.items():
            full_key = prefix + name
            if name not in node:
                if not node.is_new_allowed() and not self._is_tolerated(full_key):
                    unknown.append(full_key)
            elif isinstance(value, dict) and isinstance(node[name], _YacsCfgNode):
                self._collect_unknown(value, node[name], full_key + ".", unknown)

    def _key_path_exists(self, full_key):
        if self._is_tolerated(full_key):
            return True
        node = self
        for name in full_key.split("."):
            if not isinstance(node, _YacsCfgNode) or name not in node:
                return False
            node = node[name]
        return True

    def suggest_keys(self, full_key, max_suggestions=3):
        """Valid dotted keys that look like `full_key` (closest first)."""
        valid = _flatten_keys(self)
        leaf = full_key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(full_key, valid, n=max_suggestions, cutoff=0.6)
        same_leaf = [key for key in valid if key.rsplit(".", 1)[-1] == leaf and key not in close]
        return (close + same_leaf)[:max_suggestions]

    def _describe_unknown(self, full_key, source):
        where = f" (in {source})" if source else ""
        suggestions = self.suggest_keys(full_key)
        if suggestions:
            return f"Unknown config key '{full_key}'{where}. Did you mean: {', '.join(suggestions)}?"
        # No look-alike: list what the deepest existing parent offers instead.
        node, parent = self, []
        for name in full_key.split(".")[:-1]:
            if not isinstance(node, _YacsCfgNode) or name not in node:
                break
            node, parent = node[name], parent + [name]
        options = sorted(node.keys()) if isinstance(node, _YacsCfgNode) else []
        parent_name = ".".join(parent) or "the top level"
        return f"Unknown config key '{full_key}'{where}. Keys under {parent_name}: {', '.join(options)}"

    def _raise_unknown(self, unknown, source):
        if unknown:
            raise KeyError("\n".join(self._describe_unknown(key, source) for key in unknown))

    # ------------------------------------------------------------ value choices
    def register_value_choices(self, full_key, choices):
        """Restrict `full_key` (dotted, relative to this node) to the values in `choices`;
        checked after every merge into this node."""
        if not self._key_path_exists(full_key):
            raise KeyError(self._describe_unknown(full_key, None))
        self.__dict__.setdefault(_CHOICES, {})[full_key] = tuple(choices)

    def value_choices(self):
        """{dotted key: allowed values} registered on this node."""
        return dict(self.__dict__.get(_CHOICES, {}))

    def _check_choices(self, source):
        for full_key, choices in self.value_choices().items():
            value = self
            for name in full_key.split("."):
                value = value[name]
            if value not in choices:
                where = f" (in {source})" if source else ""
                raise ValueError(
                    f"Config key '{full_key}' must be one of {list(choices)}, got {value!r}{where}"
                )
