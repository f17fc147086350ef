import torch

from stages.model.sgmc import action_similarity, combined_similarity, frame_word_similarity


def test_s_fw_unchanged_by_padding():
    torch.manual_seed(0)
    frames = torch.randn(2, 5, 4)
    words = torch.randn(3, 6, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    ref = frame_word_similarity(frames, words, mask)
    # change the padded words arbitrarily and append more padding
    garbage = words.clone()
    garbage[~mask] = 100 * torch.randn(int((~mask).sum()), 4)
    longer = torch.cat([garbage, torch.randn(3, 4, 4)], dim=1)
    longer_mask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    assert torch.allclose(frame_word_similarity(frames, longer, longer_mask), ref, atol=1e-6)


def test_s_fw_single_frame_single_word_is_cosine():
    f = torch.tensor([[[1.0, 0.0]]])
    w = torch.tensor([[[1.0, 1.0], [5.0, -3.0]]])
    m = torch.tensor([[True, False]])
    assert torch.allclose(frame_word_similarity(f, w, m), torch.tensor([[2 ** -0.5]]))


def test_combined_similarity_is_mean_of_enabled_terms():
    torch.manual_seed(1)
    v, p, s = torch.randn(2, 4), torch.randn(2, 4), torch.randn(3, 4)
    f, w, m = torch.randn(2, 5, 4), torch.randn(3, 6, 4), torch.ones(3, 6, dtype=torch.bool)
    vs, ps = action_similarity(v, s), action_similarity(p, s)
    fw = frame_word_similarity(f, w, m)
    assert torch.allclose(combined_similarity(["vs", "ps", "fw"], v, p, f, s, w, m), (vs + ps + fw) / 3)
    assert torch.allclose(combined_similarity(["ps"], v, p, f, s, w, m), ps)
