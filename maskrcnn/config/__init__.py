"""Configuration: the global default tree `cfg` (tools merge YAML files into it, as in
maskrcnn-benchmark) and the CfgNode class it is built from."""
from .config_node import CfgNode
from .defaults import _C as cfg
