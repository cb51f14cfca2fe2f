from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, Counter

from bigbrotr.core.named_children import NOOP, OVERFLOW, Bounded, Labelled


class Maker:
    """Makes a child per key, a fresh object each call, recording which keys it made."""

    def __init__(self) -> None:
        self.made: list[object] = []

    def __call__(self, key: object) -> object:
        self.made.append(key)
        return object()


def bounded(
    limit: int = 0, exempt: frozenset[str] = frozenset()
) -> tuple[Bounded[str, object], Maker, list[str]]:
    """A Bounded over a Maker, with the names its overflow callback was given."""
    maker, folded = Maker(), list[str]()
    children: Bounded[str, object] = Bounded(maker, OVERFLOW, limit, folded.append, exempt)
    return children, maker, folded


def test_a_child_is_made_once_per_key_and_then_looked_up() -> None:
    """The first use of a key makes its child; later uses get the same one."""
    children, maker, _ = bounded()
    first = children["a"]
    assert children["a"] is first
    assert children["b"] is not first
    assert maker.made == ["a", "b"]


def test_past_the_limit_new_keys_share_one_overflow_child_and_each_update_is_reported() -> None:
    """Keys past ``limit`` are not stored; they get the overflow child, made once."""
    children, maker, folded = bounded(limit=2)
    kept = children["a"], children["b"]
    spilled = [children["c"], children["d"], children["c"]]
    assert spilled[0] is spilled[1] is spilled[2]
    assert spilled[0] not in kept
    assert maker.made == ["a", "b", OVERFLOW]
    assert folded == ["c", "d", "c"]
    assert len(children) == 2 and children["a"] is kept[0]  # kept keys still count as themselves


def test_exempt_keys_are_stored_past_the_limit() -> None:
    """The runtime's own names are never folded, however many names a service made up."""
    children, maker, folded = bounded(limit=1, exempt=frozenset({"cycles_success"}))
    children["mine"]
    exempt = children["cycles_success"]
    assert children["cycles_success"] is exempt
    assert maker.made == ["mine", "cycles_success"] and folded == []


def test_a_zero_limit_means_no_limit() -> None:
    """limit=0 keeps every key."""
    children, maker, folded = bounded(limit=0)
    for number in range(500):
        children[f"k{number}"]
    assert len(children) == 500 and folded == [] and OVERFLOW not in maker.made


def test_tuple_keys_are_reported_joined() -> None:
    """A label set folded is reported as its values joined by commas."""
    folded: list[str] = []
    children: Bounded[tuple[str, str], object] = Bounded(
        Maker(), (OVERFLOW, OVERFLOW), 1, folded.append
    )
    children["a", "b"]
    children["c", "d"]
    assert folded == ["c,d"]
    assert children.keys_made() == [("a", "b"), (OVERFLOW, OVERFLOW)]


def test_without_make_every_key_is_the_noop_and_nothing_is_kept() -> None:
    """Metrics off: every child is NOOP, nothing is stored or reported, whatever the limit."""
    folded: list[str] = []
    children: Bounded[str, object] = Bounded(None, OVERFLOW, 1, folded.append)
    assert children["a"] is children["b"] is NOOP
    assert len(children) == 0 and children.keys_made() == [] and folded == []


def test_keys_made_lists_the_overflow_key_once_it_was_made_and_reset_forgets_all() -> None:
    """keys_made() is what removal needs; after reset() children are made anew."""
    children, maker, _ = bounded(limit=1)
    children["a"]
    assert children.keys_made() == ["a"]
    children["b"]
    assert children.keys_made() == ["a", OVERFLOW]
    children.reset()
    assert children.keys_made() == []
    children["b"]
    assert children.keys_made() == ["b"]
    assert maker.made == ["a", OVERFLOW, "b"]


def test_the_noop_accepts_prometheus_client_calls_and_nothing_else() -> None:
    """Calls, labels, indexing, ``with`` and decorating all work; a typo is an AttributeError."""
    assert NOOP.labels("x").inc(2) is NOOP
    assert NOOP["a", "b"] is NOOP
    with NOOP.time() as timer:
        assert timer is NOOP

    @NOOP.time()
    def work() -> int:
        return 5

    assert work() == 5
    with pytest.raises(AttributeError):
        NOOP.incc()  # type: ignore[attr-defined]


Make = Callable[..., tuple[Labelled, CollectorRegistry, list[str]]]


@pytest.fixture
def labelled() -> Make:
    """Make a Labelled over a counter of its own registry, with the service ``svc``."""

    def make(*names: str, limit: int = 0) -> tuple[Labelled, CollectorRegistry, list[str]]:
        registry, folded = CollectorRegistry(), list[str]()
        family = Counter("hits", "Hits.", ["service", *names], registry=registry)
        return Labelled(family, "svc", names, limit, folded.append), registry, folded

    return make


def value(registry: CollectorRegistry, **labels: str) -> float | None:
    return registry.get_sample_value("hits_total", {"service": "svc", **labels})


def test_label_values_are_keyed_by_their_text(labelled: Make) -> None:
    """1 and "1" are one series; True (equal to 1 as a dict key) is its own, "True"."""
    metric, registry, _ = labelled("flag")
    metric[1].inc()
    metric["1"].inc(2)
    metric[True].inc(4)
    assert metric[1] is metric["1"] is metric.labels(flag=1)
    assert (value(registry, flag="1"), value(registry, flag="True")) == (3, 4)


def test_labels_by_position_or_by_name_give_the_same_child(labelled: Make) -> None:
    """``labels(a, b)``, ``labels(a=, b=)`` and ``metric[a, b]`` are one child."""
    metric, registry, _ = labelled("method", "code")
    child = metric["GET", 200]
    assert metric.labels("GET", "200") is child
    assert metric.labels(code=200, method="GET") is child
    child.inc()
    assert value(registry, method="GET", code="200") == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.labels("GET"), r"expected the labels \['method', 'code'\], got \['GET'\]"),
        (lambda m: m["GET", 200, "x"], r"expected the labels \['method', 'code'\], got \["),
        (lambda m: m.labels("GET", code=200), "by position or by name"),
        (lambda m: m.labels(method="GET"), "by position or by name"),
        (lambda m: m.labels(method="GET", status=200), "by position or by name"),
    ],
)
def test_wrong_labels_say_which_were_expected(
    labelled: Make, call: Callable[[Labelled], object], message: str
) -> None:
    """Too few, too many, mixed or misnamed labels are refused, naming the labels."""
    metric, _, _ = labelled("method", "code")
    with pytest.raises(ValueError, match=message):
        call(metric)


def test_past_the_limit_label_sets_fold_into_an_all_overflow_series(labelled: Make) -> None:
    """A label set past ``limit`` updates the series whose every label is ``__overflow__``."""
    metric, registry, folded = labelled("method", "code", limit=1)
    metric["GET", 200].inc()
    metric["PUT", 500].inc(2)
    assert value(registry, method=OVERFLOW, code=OVERFLOW) == 2
    assert folded == ["PUT,500"]
    assert metric.label_sets() == [("svc", "GET", "200"), ("svc", OVERFLOW, OVERFLOW)]


def test_remove_drops_the_series_and_the_next_use_starts_from_zero(labelled: Make) -> None:
    """remove() takes the series out of the family; using the values again makes a new one."""
    metric, registry, _ = labelled("flag")
    metric[1].inc(5)
    metric.remove(1)
    assert value(registry, flag="1") is None
    assert metric.label_sets() == []
    metric["1"].inc()
    assert value(registry, flag="1") == 1


def test_removing_the_overflow_series_lets_folding_export_it_again(labelled: Make) -> None:
    """After remove(__overflow__), further folded updates go to a series still exported."""
    metric, registry, _ = labelled("flag", limit=1)
    metric["a"].inc()
    metric["b"].inc()
    metric.remove(OVERFLOW)
    assert value(registry, flag=OVERFLOW) is None
    metric["c"].inc(3)
    assert value(registry, flag=OVERFLOW) == 3
