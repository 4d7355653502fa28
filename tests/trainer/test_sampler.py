from rest.trainer.sampler import PromptSampler


def test_resume_continues_the_same_stream_across_epochs():
    full = PromptSampler(10, 4, seed=3)
    stream = [full.next_indices() for _ in range(7)]  # 2 batches per epoch: crosses 3 epoch boundaries
    for stop in range(1, 7):
        first = PromptSampler(10, 4, seed=3)
        for _ in range(stop):
            first.next_indices()
        resumed = PromptSampler(10, 4, seed=3)
        resumed.load_state_dict(first.state_dict())
        assert [resumed.next_indices() for _ in range(7 - stop)] == stream[stop:]


def test_each_epoch_is_a_permutation_without_repeats():
    sampler = PromptSampler(9, 3, seed=0)
    epoch = sum((sampler.next_indices() for _ in range(3)), [])
    assert sorted(epoch) == list(range(9))
    assert sum((sampler.next_indices() for _ in range(3)), []) != epoch  # reshuffled


def test_partial_last_batch_is_dropped():
    sampler = PromptSampler(10, 4, seed=0)
    assert sampler.batches_per_epoch == 2
    sampler.next_indices(), sampler.next_indices()
    sampler.next_indices()
    assert sampler.state_dict() == {"epoch": 1, "offset": 1}
