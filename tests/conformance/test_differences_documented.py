"""The list of deliberate differences is the one in the docs, and each upstream test is listed at most once."""

from pathlib import Path

import pytest

from tests.conformance import differences

pytestmark = pytest.mark.conformance

ROOT = Path(__file__).resolve().parents[2]


def test_docs_page_is_the_rendered_list():
    page = (ROOT / "docs" / "differences.md").read_text()
    assert page == differences.render_markdown(), (
        "docs/differences.md is out of date: python -m tests.conformance.differences > docs/differences.md"
    )


def test_readme_links_the_page():
    page = (ROOT / "docs" / "conformance.md").read_text()
    assert "# Differences from Keras / scikit-learn / river" in page
    assert "differences.md" in page


def test_every_difference_has_a_reason_and_a_test():
    keys = [d.key for d in differences.DIFFERENCES]
    assert len(keys) == len(set(keys))
    for d in differences.DIFFERENCES:
        assert d.reason and d.summary and (d.tests or d.tests_after_message) and d.raises, d.key
        assert d.anchor in ("keras", "scikit-learn", "river"), d.key


@pytest.mark.parametrize(
    "name",
    [
        "test_roc_curve_toydata",
        "test_precision_recall_curve_toydata[True]",
        "test_roc_auc_score_multiclass_error[msg2-kwargs2]",
    ],
)
def test_a_test_is_listed_once(name):
    difference, _ = differences._lookup(name)
    assert difference is not None  # _lookup raises if two differences list it
