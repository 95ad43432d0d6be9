"""Hostile inputs to the validators give only clear, typed errors: property tests on text inputs, and every
hostile value in every field of every config (enumerated), where an accepted value must be stored clean."""

from __future__ import annotations

import ast
import collections.abc
import contextlib
import dataclasses
import importlib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headscope.errors import HeadscopeError, InputError, UnknownModelError
from headscope.models import CATALOG, ModelHandle, resolve

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.text(max_size=200))
def test_resolve_in_app_mode_accepts_only_catalog_names(model_id: str) -> None:
    try:
        entry = resolve(model_id, allow_external=False)
    except (UnknownModelError, InputError) as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert entry.name in CATALOG and entry.name == model_id.strip()


@FUZZ
@given(st.text(max_size=300))
def test_tokenize_gives_ids_or_a_clear_error(tiny_llama: ModelHandle, text: str) -> None:
    try:
        ids = tiny_llama.tokenize(text, max_tokens=256)
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert 0 < ids.shape[1] <= 256
        assert tiny_llama.decode(ids) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=60))
def test_resolve_external_never_crashes(model_id: str) -> None:
    with contextlib.suppress(HeadscopeError):
        resolve(model_id)


def test_fuzz_covers_control_characters() -> None:
    with pytest.raises(UnknownModelError):
        resolve("smollm2-135m\x00", allow_external=False)


# -- capability validators and report parsing ------------------------------------------------------------------
_ANY_SCALAR = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.text(max_size=8),
    st.none(),
)


@FUZZ
@given(
    lam=_ANY_SCALAR,
    mode=st.text(max_size=10) | st.sampled_from(["distance", "block", "window"]),
    beta=_ANY_SCALAR,
)
def test_locality_dial_validates_itself(lam: object, mode: str, beta: object) -> None:
    from headscope.attention import LocalityDial

    try:
        dial = LocalityDial(lam=lam, mode=mode, schedule="progressive", beta=beta)  # type: ignore[arg-type]
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert 0.0 <= dial.lam <= 1.0 and dial.beta >= 1.0


@FUZZ
@given(temperature=_ANY_SCALAR, top_p=_ANY_SCALAR, max_new=_ANY_SCALAR)
def test_decode_config_validates_itself(temperature: object, top_p: object, max_new: object) -> None:
    from headscope.decoding import DecodeConfig

    try:
        DecodeConfig(temperature=temperature, top_p=top_p, max_new_tokens=max_new)  # type: ignore[arg-type]
    except InputError as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(alpha=_ANY_SCALAR)
def test_steer_config_validates_alpha(alpha: object) -> None:
    import math

    from headscope.steering import SteerConfig

    try:
        cfg = SteerConfig(alpha=alpha)  # type: ignore[arg-type]
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert math.isfinite(cfg.alpha)


# -- every field of every config, every hostile value (enumerated, not sampled) ---------------------------------
# The configs are found in the source (every frozen dataclass named *Config, and every other frozen dataclass that
# validates itself in __post_init__): a new one fails `test_every_config_is_covered` until it is listed here.
ROOT = Path(__file__).resolve().parents[2] / "headscope"
COVERED: dict[str, dict[str, object]] = {  # config → valid values for its fields without a default
    "headscope.selection.Selection": {},
    "headscope.attention.blocks.BlockSpec": {},
    "headscope.cli.steering_inputs.ContrastiveApply": {"vectors": "v"},
    "headscope.cli.steering_inputs.ContrastiveRun": {},
    "headscope.cli.steering_inputs.EvalOptions": {},
    "headscope.cli.steering_inputs.LofitApply": {"vectors": "v"},
    "headscope.cli.steering_inputs.LofitTrain": {"task": "antonyms"},
    "headscope.cli.steering_inputs.ModelOptions": {},
    "headscope.attention.locality.LayerSchedule": {},
    "headscope.attention.locality.LocalityDial": {},
    "headscope.circuits.ablate.AblationConfig": {},
    "headscope.circuits.config.CircuitConfig": {},
    "headscope.circuits.edges_graph.EdgeGraph": {"n_layers": 2, "n_heads": 4, "n_kv_heads": 2},
    "headscope.circuits.sae.SAEConfig": {},
    "headscope.circuits.variants.SAEVariant": {"name": "v", "summary": "what", "motivation": "why"},
    "headscope.decoding.config.DecodeConfig": {},
    "headscope.features.evaluate.EvalConfig": {},
    "headscope.features.index.IndexConfig": {},
    "headscope.features.steer.FeatureSteerConfig": {"feature": 0},
    "headscope.features.train.TrainConfig": {"kind": "resid_post", "layer": 1, "latents": 64},
    "headscope.kernels.triton_attn.KernelConfig": {},
    "headscope.localist.train_sweep.SweepConfig": {},
    "headscope.localist.training.TrainConfig": {},
    "headscope.models.device_map.DeviceMapSpec": {},
    "headscope.probes.probe.ProbeConfig": {},
    "headscope.probes.report.EntropyConfig": {},
    "headscope.probes.sweep.SweepConfig": {},
    "headscope.probes.view.ViewConfig": {},
    "headscope.steering.comparison.SideBySideConfig": {},
    "headscope.steering.contrastive.ContrastiveConfig": {},
    "headscope.steering.heldout.HeldOut": {"positives": ("a b",), "negatives": ("c d",)},
    "headscope.steering.direction.SteerConfig": {},
    "headscope.steering.generate.GenConfig": {},
    "headscope.steering.lofit.LofitConfig": {},
}
NOT_CONFIGS = {  # validate themselves but take no user value: built by code from checked configs or shipped data
    "headscope.circuits.edges_result.EdgeAttribution": "a result built by the edge run; reports read it via the codec",
    "headscope.circuits.result.TaskInfo": "a result built from a generated task; reports read it via the codec",
    "headscope.decoding.tree.TokenTree": "a draft tree built by the decoding loop from a drafter's tokens",
    "headscope.kernels.bias.KernelBias": "tensors built from a checked LocalityDial",
    "headscope.models.catalog.CatalogEntry": "the shipped model catalog, written in code",
    "headscope.steering.direction.SteeringVector": "a tensor made by the steering code or read from its file",
    "headscope.steering.tasks.Pair": "task data shipped as assets",
    "headscope.steering.tasks.TaskData": "task data shipped as assets",
}
UNBOUNDED = {  # fields that may take a number of magnitude ≥ 1e12 (every other field must refuse it: a range)
    "headscope.circuits.config.CircuitConfig.circuit_threshold": "a node-score threshold, any real",
    "headscope.cli.steering_inputs.EvalOptions.seed": "seeds go up to 2**63 - 1",
    "headscope.steering.comparison.SideBySideConfig.seed": "seeds go up to 2**63 - 1",
    "headscope.features.steer.FeatureSteerConfig.feature": "checked against the SAE's width when it runs",
    "headscope.localist.training.TrainConfig.max_train_windows": "a cap: more than the corpus means all of it",
    "headscope.probes.probe.ProbeConfig.seed": "seeds go up to 2**63 - 1",
    "headscope.steering.generate.GenConfig.seed": "seeds go up to 2**63 - 1",
}
STORED = {  # fields stored in another type than they accept
    "headscope.attention.locality.LocalityDial.heads": str | None,  # kept as grammar text
}
HOSTILE: tuple[object, ...] = (
    None, True, False, 0, 1, -1, 3, 0.5, -0.5, 2.0, 10**12, -(10**12), 1e308, float("nan"), float("inf"),
    float("-inf"), "", " ", "1", " 2 ", "0.5", "-1", "nan", "inf", "x", "abc" * 400, b"1", (), (1, 2), (0.5,),
    [0.5], ["x"], {}, {"cpu": 1}, {"cpu": "1"}, {"cpu": True}, {1: 2}, {"x": "y"}, object(),
)  # fmt: skip


def _valid_in_another_type(path: str, field: dataclasses.Field) -> list[object]:
    """The field's own default (or required value) written as text, as a float for an int, as an int for an
    integral float, as a list for a tuple: accepted, it must be stored in the field's type."""
    value = COVERED[path].get(field.name, field.default)
    if isinstance(value, bool) or value is dataclasses.MISSING:
        return []
    if isinstance(value, int):
        return [str(value), f" {value} ", float(value)]
    if isinstance(value, float):
        return [str(value), *([int(value)] if value.is_integer() else [])]
    if isinstance(value, tuple) and all(isinstance(v, int | float) for v in value):
        return [list(value), tuple(str(v) for v in value)]
    return []


def _declared_configs() -> set[str]:
    found = set()
    for path in ROOT.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and _frozen(node):
                validates = any(
                    isinstance(b, ast.FunctionDef) and b.name == "__post_init__" for b in node.body
                )
                if node.name.endswith("Config") or validates:
                    found.add(f"{module}.{node.name}")
    return found


def _frozen(node: ast.ClassDef) -> bool:
    return any(
        isinstance(d, ast.Call)
        and any(k.arg == "frozen" and getattr(k.value, "value", False) for k in d.keywords)
        for d in node.decorator_list
    )


def _config_class(path: str) -> type:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def conforms(value: object, hint: object) -> bool:
    """Whether `value` is of the type `hint` (a field's annotation), strictly: an int is no float, a bool no int,
    a NaN no float; tuples and mappings element by element."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(conforms(v, a) for v, a in zip(value, args, strict=True))
    if origin in (collections.abc.Mapping, dict):
        return isinstance(value, collections.abc.Mapping) and all(
            conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items()
        )
    if hint is float:
        return type(value) is float and math.isfinite(value)
    if hint in (int, bool, str):
        return type(value) is hint
    if origin is collections.abc.Sequence:
        return isinstance(value, collections.abc.Sequence) and all(conforms(v, args[0]) for v in value)
    return isinstance(value, typing.cast(type, hint))


def _field_cases() -> list[Any]:
    return [
        pytest.param(path, f, id=".".join([*path.rsplit(".", 2)[-2:], f.name]))
        for path in sorted(COVERED)
        for f in dataclasses.fields(_config_class(path))
        if f.init
    ]


def test_every_config_is_covered() -> None:
    declared = _declared_configs()
    missing = declared - set(COVERED) - set(NOT_CONFIGS)
    assert not missing, f"configs the fuzz test does not cover (add them to COVERED): {sorted(missing)}"
    assert not (set(COVERED) | set(NOT_CONFIGS)) - declared, "listed configs that no longer exist"
    assert len(_field_cases()) > 150  # every field of every config, not a handful
    fields = {f"{p.values[0]}.{p.values[1].name}" for p in _field_cases()}
    assert set(UNBOUNDED) | set(STORED) <= fields, "exceptions listed for fields that no longer exist"


def _outcome(path: str, field: str, value: object) -> str | None:
    """None when `value` in `field` gives one InputError line, or a config that stores a clean value of the
    field's type that its own checks accept again; otherwise what went wrong."""
    cls = _config_class(path)
    try:
        cfg = cls(**{**COVERED[path], field: value})
    except InputError as e:
        return None if str(e) and "\n" not in str(e) else f"error not one line: {e!r}"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    stored = getattr(cfg, field)
    hint = STORED.get(f"{path}.{field}", typing.get_type_hints(cls)[field])
    if not conforms(stored, hint):
        return f"accepted and stored {stored!r} ({type(stored).__name__}), not a valid {hint}"
    huge = isinstance(stored, int | float) and not isinstance(stored, bool) and abs(stored) >= 1e12
    if huge and f"{path}.{field}" not in UNBOUNDED:
        return f"accepted {value!r}: no upper range"
    try:
        again = dataclasses.replace(cfg)
    except Exception as e:
        return f"stored {stored!r}, which its own checks then refuse: {e}"
    return None if again == cfg else f"stored {stored!r}, which does not survive a second check"


@pytest.mark.parametrize(("path", "field"), _field_cases())
def test_every_hostile_value_in_every_field(path: str, field: dataclasses.Field) -> None:
    values = [*HOSTILE, *_valid_in_another_type(path, field)]
    failures = {repr(v)[:40]: out for v in values if (out := _outcome(path, field.name, v)) is not None}
    assert not failures, f"{path}.{field.name}: {failures}"


@pytest.mark.parametrize(
    ("path", "kwargs", "field", "stored"),
    [
        (
            "headscope.features.train.TrainConfig",
            {"kind": "resid_post", "layer": "1", "latents": 64},
            "layer",
            1,
        ),
        (
            "headscope.features.train.TrainConfig",
            {"kind": "resid_post", "layer": 1, "latents": "64"},
            "latents",
            64,
        ),
        ("headscope.features.index.IndexConfig", {"tokens": "640"}, "tokens", 640),
        ("headscope.circuits.config.CircuitConfig", {"n_examples": 8.0}, "n_examples", 8),
        ("headscope.localist.training.TrainConfig", {"lam": "0.5"}, "lam", 0.5),
    ],
)
def test_a_config_stores_the_checked_value(path: str, kwargs: dict, field: str, stored: object) -> None:
    value = getattr(_config_class(path)(**kwargs), field)
    assert value == stored and type(value) is type(stored)


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("headscope.localist.train_sweep.SweepConfig", {"base": "x"}),
        ("headscope.localist.train_sweep.SweepConfig", {"progressive": float("nan")}),
        ("headscope.localist.train_sweep.SweepConfig", {"deep": None}),
        ("headscope.features.train.TrainConfig", {"kind": "resid_post", "layer": 1.5, "latents": 64}),
    ],
)
def test_named_hostile_values_are_refused(path: str, kwargs: dict) -> None:
    full = {**COVERED[path], **kwargs}
    with pytest.raises(InputError) as err:
        _config_class(path)(**full)
    assert "\n" not in str(err.value)


def test_the_type_oracle_can_fail() -> None:
    # the oracle itself: a raw string, a bool, a NaN and an int in a float field are all caught
    assert not conforms("1", int) and not conforms(True, int) and not conforms(float("nan"), float)
    assert (
        not conforms(1, float) and not conforms((0.5, "x"), tuple[float, ...]) and conforms(None, int | None)
    )
    assert (
        conforms(1, int) and conforms((0.5,), tuple[float, ...]) and not conforms({"a": "b"}, dict[str, int])
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.one_of(st.binary(max_size=300), _JSON.map(lambda v: json.dumps(v).encode())))
def test_report_parsing_gives_only_clear_errors(data: bytes) -> None:
    from headscope.circuits import loads_report

    with pytest.raises(InputError) as err:
        loads_report(data)
    assert str(err.value) and "Traceback" not in str(err.value)
