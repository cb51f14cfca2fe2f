from bigbrotr.core.samples import sample_value, samples
from bigbrotr.testing import sample_value as kits_sample_value

TEXT = """# HELP jobs_total Jobs.
# TYPE jobs_total counter
jobs_total{queue="a",env="prod"} 2.0
jobs_total{queue="b",env="prod"} 5.0
# HELP temp Temp.
# TYPE temp gauge
temp 21.5
"""


def test_samples_lists_every_sample_with_its_labels() -> None:
    """samples() yields name, labels and value of each sample, in order."""
    assert list(samples(TEXT)) == [
        ("jobs_total", {"queue": "a", "env": "prod"}, 2.0),
        ("jobs_total", {"queue": "b", "env": "prod"}, 5.0),
        ("temp", {}, 21.5),
    ]


def test_sample_value_matches_the_labels_given_and_reads_openmetrics() -> None:
    """The labels given must match (others may differ); OpenMetrics' # EOF is fine."""
    assert sample_value(TEXT, "jobs_total", queue="b") == 5.0
    assert sample_value(TEXT, "jobs_total", queue="c") is None
    assert sample_value(TEXT + "# EOF\n", "temp") == 21.5
    assert kits_sample_value is sample_value  # the testing kit's is this one
