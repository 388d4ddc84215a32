"""The data kinds: data.digits, data.synthetic, data.csv, data.split."""
from __future__ import annotations

import gzip
import hashlib
import importlib.resources

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowopt.artifacts import Dataset
from flowopt.nodes import data

# --- data.digits ------------------------------------------------------------------------

DIGIT_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # images per digit 0..9


def test_digits_has_1797_images_of_64_pixels_scaled_to_unit_range():
    digits = data.digits.fn()
    assert digits.x.shape == (1797, 64) and digits.x.dtype == torch.float32
    assert digits.y.shape == (1797,) and digits.y.dtype == torch.int64
    assert digits.x.min() == 0.0 and digits.x.max() == 1.0
    # Pixels were integers 0..16 before scaling by 1/16.
    assert torch.equal(digits.x * 16, (digits.x * 16).round())


def test_digits_labels_are_the_ten_digits_with_the_published_class_counts():
    counts = torch.bincount(data.digits.fn().y).tolist()
    assert counts == DIGIT_COUNTS


def test_digits_meta_describes_the_task_and_hashes_the_shipped_file():
    meta = data.digits.fn().meta
    payload = (importlib.resources.files("flowopt.nodes") / "resources/digits.csv.gz").read_bytes()
    assert meta["task"] == "classification"
    assert (meta["n_classes"], meta["n_features"]) == (10, 64)
    assert meta["source"] == {"file": "digits.csv.gz",
                              "sha256": hashlib.sha256(payload).hexdigest()}


def test_digits_is_deterministic_and_so_shared_across_seeds():
    assert data.digits.kind.deterministic and not data.digits.kind.wants_context


# --- data.synthetic ----------------------------------------------------------------------


def synthetic(make_ctx, seed=0, **config):
    return data.synthetic.fn(make_ctx(seed), **config)


def test_synthetic_is_reproducible_from_the_seed(make_ctx):
    for task in ("classification", "regression"):
        a, b = synthetic(make_ctx, 7, task=task), synthetic(make_ctx, 7, task=task)
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_synthetic_changes_with_the_seed(make_ctx):
    for task in ("classification", "regression"):
        a, b = synthetic(make_ctx, 1, task=task), synthetic(make_ctx, 2, task=task)
        assert not torch.equal(a.x, b.x)


def test_synthetic_does_not_touch_the_global_rng(make_ctx):
    state = torch.get_rng_state()
    synthetic(make_ctx, 3)
    assert torch.equal(state, torch.get_rng_state())


def test_synthetic_classification_gives_balanced_separable_blobs(make_ctx):
    blobs = synthetic(make_ctx, n_samples=301, n_features=5, n_classes=3, noise=0.05)
    assert blobs.x.shape == (301, 5) and blobs.x.dtype == torch.float32
    assert blobs.y.dtype == torch.int64
    assert torch.bincount(blobs.y).tolist() == [101, 100, 100]
    assert blobs.meta["task"] == "classification"
    assert (blobs.meta["n_classes"], blobs.meta["n_features"]) == (3, 5)
    # With little noise every point is nearest to its own class mean.
    means = torch.stack([blobs.x[blobs.y == k].mean(0) for k in range(3)])
    assert torch.equal(torch.cdist(blobs.x, means).argmin(1), blobs.y)


def test_synthetic_regression_is_linear_plus_noise_of_the_given_size(make_ctx):
    reg = synthetic(make_ctx, task="regression", n_samples=2000, n_features=4, noise=0.1)
    assert reg.y.dtype == torch.float32 and reg.meta["task"] == "regression"
    assert "n_classes" not in reg.meta
    weights = torch.linalg.lstsq(reg.x, reg.y.unsqueeze(1)).solution
    residual = reg.y - (reg.x @ weights).squeeze(1)
    assert residual.std().item() == pytest.approx(0.1, rel=0.1)


# --- data.csv ----------------------------------------------------------------------------


def test_csv_reads_features_and_a_named_target_with_string_labels(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text("width,height,species\n1.5,2,setosa\n3,4.25,virginica\n5,6,setosa\n")
    table = data.csv.fn(path=str(path), target="species")
    assert torch.equal(table.x, torch.tensor([[1.5, 2.0], [3.0, 4.25], [5.0, 6.0]]))
    assert table.y.tolist() == [0, 1, 0]
    assert table.meta["classes"] == ["setosa", "virginica"]
    assert table.meta["features"] == ["width", "height"]
    assert (table.meta["task"], table.meta["n_classes"], table.meta["n_features"]) == \
        ("classification", 2, 2)
    assert table.meta["source"] == {"file": str(path.resolve()),
                                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_csv_round_trips_a_dataset_written_without_a_header(tmp_path, make_ctx):
    original = synthetic(make_ctx, n_samples=50, n_features=3, n_classes=4)
    rows = [",".join([str(int(label)), *(repr(float(v)) for v in x)])
            for x, label in zip(original.x, original.y, strict=True)]
    path = tmp_path / "blobs.csv.gz"
    path.write_bytes(gzip.compress("\n".join(rows).encode()))
    table = data.csv.fn(path=str(path), target=0)
    assert torch.equal(table.x, original.x) and torch.equal(table.y, original.y)
    assert "features" not in table.meta and table.meta["n_classes"] == 4


def test_csv_infers_regression_for_a_fractional_target_and_honours_task(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a;y\n1;0.5\n2;1.5\n")
    table = data.csv.fn(path=str(path), delimiter=";")
    assert table.meta["task"] == "regression" and table.y.tolist() == [0.5, 1.5]
    path.write_text("a;y\n1;1\n2;3\n")
    assert data.csv.fn(path=str(path), delimiter=";").meta["task"] == "classification"
    forced = data.csv.fn(path=str(path), delimiter=";", task="regression")
    assert forced.meta["task"] == "regression" and forced.y.dtype == torch.float32


def test_csv_missing_file_is_a_clear_file_not_found_error(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        data.csv.fn(path=str(missing))


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,2\n3\n", "row 3 has 1 columns, expected 2"),
    ("a,b\n1,2\nx,2\n", "row 3, column 'a': 'x' is not a number"),
    ("a,b\n", "header row but no data"),
])
def test_csv_malformed_rows_are_reported_by_row_and_column(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        data.csv.fn(path=str(path))


def test_csv_target_name_without_header_is_an_error(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="no header"):
        data.csv.fn(path=str(path), target="label")


# --- data.split --------------------------------------------------------------------------


def labelled(labels: list[int]) -> Dataset:
    """A dataset whose single feature is the row number, so rows can be traced."""
    n = len(labels)
    return Dataset(x=torch.arange(n, dtype=torch.float32).unsqueeze(1),
                   y=torch.tensor(labels, dtype=torch.int64),
                   meta={"task": "classification", "n_classes": max(labels) + 1,
                         "n_features": 1})


def split(dataset, make_ctx, seed=0, val_fraction=0.2):
    parts = data.split.fn(dataset, make_ctx(seed), val_fraction=val_fraction)
    return parts["train"], parts["val"]


def rows(part: Dataset) -> list[int]:
    return part.x[:, 0].long().tolist()


def test_split_is_stratified_disjoint_and_covers_every_row(make_ctx):
    dataset = labelled([0] * 50 + [1] * 30 + [2] * 20)
    train, val = split(dataset, make_ctx, val_fraction=0.2)
    assert torch.bincount(val.y).tolist() == [10, 6, 4]
    assert torch.bincount(train.y).tolist() == [40, 24, 16]
    assert set(rows(train)).isdisjoint(rows(val))
    assert sorted(rows(train) + rows(val)) == list(range(100))
    # Each row keeps its own label.
    assert torch.equal(train.y, dataset.y[train.x[:, 0].long()])


def test_split_is_deterministic_per_seed_and_differs_between_seeds(make_ctx):
    dataset = data.digits.fn()
    first, again, other = (split(dataset, make_ctx, seed)[1] for seed in (0, 0, 1))
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    assert not torch.equal(first.x, other.x)


def test_split_of_digits_keeps_class_proportions_and_meta(make_ctx):
    train, val = split(data.digits.fn(), make_ctx)
    assert len(train) + len(val) == 1797
    assert torch.bincount(val.y).tolist() == [round(0.2 * c) for c in DIGIT_COUNTS]
    assert (train.meta["split"], val.meta["split"]) == ("train", "val")
    assert val.meta["n_classes"] == 10 and val.meta["source"]["file"] == "digits.csv.gz"


def test_split_of_regression_data_shuffles_all_rows_together(make_ctx):
    dataset = Dataset(x=torch.arange(10.0).unsqueeze(1), y=torch.arange(10.0),
                      meta={"task": "regression", "n_features": 1})
    train, val = split(dataset, make_ctx, val_fraction=0.3)
    assert len(val) == 3 and sorted(rows(train) + rows(val)) == list(range(10))
    assert torch.equal(train.y, train.x[:, 0])


def test_split_refuses_to_leave_a_part_empty(make_ctx):
    with pytest.raises(ValueError, match="empty"):
        split(labelled([0, 1]), make_ctx, val_fraction=0.2)


# make_ctx builds a fresh Context per call, so sharing the fixture between examples is safe.
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=5),
       fraction=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
def test_split_property_each_class_is_divided_by_the_fraction(make_ctx, counts, fraction, seed):
    labels = [k for k, c in enumerate(counts) for _ in range(c)]
    expected_val = [round(fraction * c) for c in counts]
    if sum(expected_val) == 0 or sum(expected_val) == len(labels):
        return  # one part would be empty: covered by test_split_refuses_to_leave_a_part_empty
    train, val = split(labelled(labels), make_ctx, seed, val_fraction=fraction)
    assert torch.bincount(val.y, minlength=len(counts)).tolist() == expected_val
    assert sorted(rows(train) + rows(val)) == list(range(len(labels)))
