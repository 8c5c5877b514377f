from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scoring.config import parse_config
from scoring.events import AccountAttributes
from scoring.scoring_model import (
    OVERRIDE_COMPONENT,
    Aggregation,
    ComponentModel,
    LinearMapping,
    LogMapping,
    Measure,
    Metric,
    ModelError,
    ScoringModel,
    StepsMapping,
    default_model,
    label_for,
    load_model,
)
from tests.factories import T0


def minimal(**changes: Any) -> dict[str, Any]:
    """A small valid model as YAML data; ``changes`` replace top-level fields."""
    data: dict[str, Any] = {
        "name": "tiny",
        "components": {
            "usage": {
                "weight": 3,
                "measures": [
                    {
                        "name": "logins_7d",
                        "label": "logins in 7 days",
                        "metric": "logins",
                        "window_days": 7,
                        "mapping": {"type": "linear", "low": 0, "high": 10},
                    }
                ],
            }
        },
        "bands": [{"label": "good", "min": 60}, {"label": "bad", "min": 0}],
        "grades": [{"label": "A", "min": 50}, {"label": "F", "min": 0}],
    }
    data.update(changes)
    return data


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mapping", "raw", "expected"),
    [
        (LinearMapping(type="linear", low=0, high=20), 5, 25.0),
        (LinearMapping(type="linear", low=0, high=20), -3, 0.0),
        (LinearMapping(type="linear", low=0, high=20), 40, 100.0),
        (LinearMapping(type="linear", low=2, high=6, higher_is_better=False), 3, 75.0),
        (LinearMapping(type="linear", low=2, high=6, higher_is_better=False), 9, 0.0),
        (LogMapping(type="log", low=0, high=9), 0, 0.0),
        (LogMapping(type="log", low=0, high=9), 9, 100.0),
        (LogMapping(type="log", low=0, high=99), 9, 50.0),
        (LogMapping(type="log", low=0, high=99, higher_is_better=False), 9, 50.0),
    ],
)
def test_continuous_mappings(
    mapping: LinearMapping | LogMapping, raw: float, expected: float
) -> None:
    assert mapping.score(raw) == pytest.approx(expected)


def test_steps_take_the_last_step_reached() -> None:
    steps = StepsMapping.model_validate(
        {
            "type": "steps",
            "steps": [{"min": 0, "score": 100}, {"min": 3, "score": 60}, {"min": 7, "score": 0}],
        }
    )
    assert [steps.score(x) for x in (-1, 0, 2.9, 3, 6.99, 7, 100)] == [100, 100, 100, 60, 60, 0, 0]


def test_steps_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending"):
        StepsMapping.model_validate(
            {"type": "steps", "steps": [{"min": 5, "score": 1}, {"min": 1, "score": 2}]}
        )


def _component(aggregation: str) -> ComponentModel:
    measure = {
        "label": "x",
        "metric": "open_tickets",
        "mapping": {"type": "linear", "low": 0, "high": 1},
    }
    return ComponentModel.model_validate(
        {
            "weight": 1,
            "aggregation": aggregation,
            "measures": [
                {**measure, "name": "a", "weight": 3},
                {**measure, "name": "b", "weight": 1},
            ],
        }
    )


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [(Aggregation.WEIGHTED_MEAN, 70.0), (Aggregation.MIN, 60.0), (Aggregation.MAX, 100.0)],
)
def test_aggregations(aggregation: Aggregation, expected: float) -> None:
    component = _component(aggregation.value)
    a, b = component.measures
    assert component.aggregate([(a, 60.0), (b, 100.0)]) == pytest.approx(expected)


def test_windowed_metrics_need_a_window_and_others_refuse_one() -> None:
    base = {"name": "m", "label": "m", "mapping": {"type": "linear", "low": 0, "high": 1}}
    with pytest.raises(ValueError, match="needs window_days"):
        Measure.model_validate({**base, "metric": "logins"})
    with pytest.raises(ValueError, match="takes no window_days"):
        Measure.model_validate({**base, "metric": "open_tickets", "window_days": 7})
    with pytest.raises(ValueError, match="baseline_days"):
        Measure.model_validate({**base, "metric": "usage_trend", "window_days": 7})
    trend = Measure.model_validate(
        {**base, "metric": "usage_trend", "window_days": 7, "baseline_days": 28}
    )
    assert trend.metric is Metric.USAGE_TREND


def test_load_model_from_a_file(tmp_path: Path) -> None:
    model = load_model(write(tmp_path, minimal()))
    assert model.name == "tiny"
    assert model.windows == (7,)
    assert model.version.startswith("tiny@")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            minimal(bands=[{"label": "a", "min": 10}, {"label": "b", "min": 40}]),
            "bands: Value error, list the best first",
        ),
        (minimal(bands=[{"label": "a", "min": 60}, {"label": "b", "min": 5}]), "min 0"),
        (minimal(colour="blue"), "colour: Extra inputs are not permitted"),
        (minimal(stale_after_days=-1), "stale_after_days"),
        (minimal(components={"csm_override": minimal()["components"]["usage"]}), "reserved"),
        (
            minimal(
                segments=[{"name": "big", "when": {"plan": ["enterprise"]}, "weights": {"nope": 1}}]
            ),
            "unknown components",
        ),
    ],
)
def test_errors_name_the_file_the_field_and_the_problem(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ModelError) as caught:
        load_model(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_errors_point_into_nested_fields(tmp_path: Path) -> None:
    data = minimal()
    data["components"]["usage"]["measures"][0]["mapping"] = {"type": "linear", "low": 5, "high": 1}
    with pytest.raises(ModelError, match=r"components\.usage\.measures\.0\.mapping\.linear"):
        load_model(write(tmp_path, data))


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ncomponents: [\n")
    with pytest.raises(ModelError, match=r"broken\.yaml: line \d+: not valid YAML"):
        load_model(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        load_model(tmp_path / "nope.yaml")


def test_version_is_a_content_hash() -> None:
    a = parse_config(ScoringModel, minimal(), "a")
    b = parse_config(ScoringModel, minimal(), "b")
    c = parse_config(ScoringModel, minimal(stale_after_days=3), "c")
    assert a.version == b.version
    assert a.version != c.version


def test_labels_for_bands_and_grades() -> None:
    model = default_model()
    assert [label_for(model.bands, s) for s in (100, 80, 79.9, 55, 54.9, 0)] == [
        "healthy",
        "healthy",
        "at-risk",
        "at-risk",
        "critical",
        "critical",
    ]
    assert [label_for(model.grades, s) for s in (95, 90, 80, 67, 55, 10)] == [
        "A",
        "A",
        "B",
        "C",
        "D",
        "F",
    ]


def attributes(**fields: Any) -> AccountAttributes:
    return AccountAttributes(account_id="acme", updated_at=T0, **fields)


def test_segments_pick_weights_and_bands_by_attributes() -> None:
    model = default_model()
    default = model.profile_for(None)
    assert default.segment is None
    enterprise = model.profile_for(attributes(plan="enterprise"))
    assert enterprise.segment == "enterprise"
    assert enterprise.weights["support"] == 16
    assert enterprise.weights["relationship"] == default.weights["relationship"]
    assert enterprise.weights[OVERRIDE_COMPONENT] == default.weights[OVERRIDE_COMPONENT]
    assert enterprise.bands[0].min == 85
    onboarding = model.profile_for(attributes(lifecycle_stage="onboarding", plan="team"))
    assert onboarding.segment == "onboarding"
    assert onboarding.bands == model.bands
    assert model.profile_for(attributes(plan="team")).segment is None


def test_default_model_ships_with_the_package() -> None:
    model = default_model()
    assert set(model.components) == {
        "usage",
        "adoption",
        "support",
        "billing",
        "sentiment",
        "relationship",
    }
    assert model.override is not None
    assert model.windows == (7, 30, 35, 60, 90)
    relative = {m.name for m in model.peer_measures}
    assert {"active_days_30d", "feature_breadth_30d", "uses_per_login_30d"} <= relative
    assert not relative & {"usage_trend_30d", "payment_failures_30d", "nps_latest", "tenure_days"}


def test_a_changed_copy_is_another_version() -> None:
    model = default_model()
    assert model.version.startswith("default@")  # cached on the original first
    renamed = model.model_copy(update={"name": "candidate"})
    assert renamed.version.startswith("candidate@")
    assert renamed.version != model.version
    assert model.model_copy().version == model.version
