import pytest

from persona.batching import length_sorted_batches


def test_batches_cover_every_row_once_longest_first():
    lengths = [3, 9, 1, 9, 5, 2, 7]
    batches = length_sorted_batches(lengths, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert flat[:2] == [1, 3]  # equal lengths keep their order


def test_tuple_keys_and_bad_batch_size():
    assert length_sorted_batches([(2, 5), (2, 9), (4, 1)], 2) == [[2, 1], [0]]
    assert length_sorted_batches([], 4) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        length_sorted_batches([1], 0)
