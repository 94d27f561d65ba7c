"""A cell's cache key: changes with every config value, and with nothing else but its data and
its dependencies; a newly declared key (a new loss's) at its default leaves it unchanged."""
import os

from detectron2.config import CfgNode, get_cfg

from lt_det.benchmark.cells import cell_key, config_identity, default_config, flatten_metrics
from lt_det.benchmark.runner import RECIPE
from lt_det.config import add_lt_det_config


def _recipe():
    cfg = get_cfg()
    add_lt_det_config(cfg)
    cfg.merge_from_file(RECIPE)
    return cfg


def _leaves(node: CfgNode, prefix=""):
    for k, v in node.items():
        if isinstance(v, CfgNode):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_x"
    if value is None:
        return 1
    if isinstance(value, (tuple, list)):
        return type(value)(list(value) + [value[-1] if value else 1])
    raise TypeError(type(value))


def _set(cfg, dotted, value):
    node = cfg
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


DATA = {"bench": {"seed": 0}, "version": 2}


def test_key_changes_with_every_config_value():
    base = _recipe()
    key = cell_key("train", config_identity(base), DATA)
    assert cell_key("train", config_identity(_recipe()), DATA) == key  # rebuilt: same key
    leaves = [(k, v) for k, v in _leaves(base) if k not in ("OUTPUT_DIR", "MODEL.WEIGHTS")]
    assert len(leaves) > 200  # every key of the config, lt_det's included
    for dotted, value in leaves:
        cfg = base.clone()
        _set(cfg, dotted, _changed(value))
        assert cell_key("train", config_identity(cfg), DATA) != key, dotted


def test_key_ignores_paths_and_follows_data_and_dependencies():
    base = _recipe()
    key = cell_key("train", config_identity(base), DATA, deps=["abc"])
    moved = base.clone()
    moved.OUTPUT_DIR, moved.MODEL.WEIGHTS = "/elsewhere", "/elsewhere/backbone.pth"
    assert cell_key("train", config_identity(moved), DATA, deps=["abc"]) == key
    assert cell_key("train", config_identity(base), DATA, deps=["abd"]) != key  # its stage 1 changed
    assert cell_key("train", config_identity(base), {**DATA, "bench": {"seed": 1}}, deps=["abc"]) != key
    assert cell_key("tau_norm", config_identity(base), DATA, deps=["abc"]) != key


def test_flatten_metrics():
    flat = flatten_metrics({"bbox": {"AP": 1.5, "APr": None}})
    assert flat["bbox/AP"] == 1.5 and flat["bbox/APr"] != flat["bbox/APr"]  # None -> NaN
    assert os.path.basename(RECIPE) == "Base-benchmark.yaml"


def test_a_new_key_at_its_default_keeps_the_key():
    """A loss registered later declares its own node: finished cells must stay valid."""
    base, defaults = _recipe(), default_config()
    key = cell_key("train", config_identity(base, defaults), DATA)
    for cfg in (base, defaults):
        cfg.MODEL.LT_LOSS.NEW_LOSS = CfgNode({"STRENGTH": 0.5})
    assert cell_key("train", config_identity(base, defaults), DATA) == key
    base.MODEL.LT_LOSS.NEW_LOSS.STRENGTH = 0.7  # ... but setting it is a change
    assert cell_key("train", config_identity(base, defaults), DATA) != key
