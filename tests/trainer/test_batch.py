import torch

from rest.trainer.batch import build_batch


def test_layout_left_pads_prompts_and_right_pads_responses():
    batch = build_batch([[5, 6, 7], [8]], [[1, 2], [3, 4, 9]], [[-0.1, -0.2], [-0.3, -0.4, -0.5]], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1, 2, 0], [0, 0, 8, 3, 4, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 4], [0, 0, 0, 1, 2, 3]]
    assert batch["responses"].tolist() == [[1, 2, 0], [3, 4, 9]]
    assert batch["response_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert torch.allclose(batch["rollout_log_prob"], torch.tensor([[-0.1, -0.2, 0.0], [-0.3, -0.4, -0.5]]))
    # the last R columns are the response: what the actor scores
    assert torch.equal(batch["input_ids"][:, -3:] * batch["response_mask"], batch["responses"] * batch["response_mask"])


def test_empty_response_is_all_masked():
    batch = build_batch([[5]], [[]], [[]], pad_id=0)
    assert batch["response_mask"].sum() == 0
