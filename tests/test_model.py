import pytest
import torch

from nmt.config import ModelConfig
from nmt.model import Transformer, sinusoidal_positions
from nmt.vocab import BOS, EOS, PAD

from .conftest import tiny_config


def random_batch(vocab=40, B=3, S=7, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (B, S), generator=g)
    src[1, 4:] = PAD  # a shorter second sentence
    src[1, 3] = EOS
    tgt = torch.randint(4, vocab, (B, T), generator=g)
    tgt[:, 0] = BOS
    return src, tgt


def test_positions_are_sin_cos_halves():
    p = sinusoidal_positions(5, 8)
    assert p.shape == (5, 8)
    assert torch.allclose(p[0], torch.tensor([0.0] * 4 + [1.0] * 4))


@pytest.mark.parametrize("pre_norm", [True, False])
def test_source_padding_does_not_change_outputs(pre_norm):
    """Appending PAD to a source must not change the logits of any target position."""
    torch.manual_seed(0)
    model = Transformer(tiny_config(pre_norm=pre_norm)).eval()
    src, tgt = random_batch()
    padded = torch.cat([src, torch.full((3, 5), PAD)], dim=1)
    with torch.no_grad():
        a, b = model(src, tgt), model(padded, tgt)
    assert torch.allclose(a, b, atol=1e-5)


def test_decoder_is_causal(tiny_model):
    """Changing a later target token must not change earlier positions' logits."""
    src, tgt = random_batch()
    changed = tgt.clone()
    changed[:, 4] = (changed[:, 4] + 1) % 40
    with torch.no_grad():
        a, b = tiny_model(src, tgt), tiny_model(src, changed)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)


@pytest.mark.parametrize("pre_norm", [True, False])
def test_incremental_decoding_equals_full_forward(pre_norm):
    torch.manual_seed(0)
    model = Transformer(tiny_config(pre_norm=pre_norm, dec_layers=3)).eval()
    src, tgt = random_batch()
    with torch.no_grad():
        full = torch.log_softmax(model(src, tgt), dim=-1)
        state = model.init_state(src)
        steps = [model.decode_step(tgt[:, t], state) for t in range(tgt.size(1))]
    assert torch.allclose(torch.stack(steps, dim=1), full, atol=1e-4)


def test_tied_embeddings_share_one_matrix():
    model = Transformer(tiny_config())
    assert model.output.weight is model.embed.weight is model.tgt_embed.weight
    untied = Transformer(tiny_config(tie_embeddings=False))
    assert untied.output.weight is not untied.embed.weight


def test_too_long_input_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="max_positions"):
        tiny_model.encode(torch.full((1, 100), 5))


def test_config_rejects_heads_not_dividing_d_model():
    with pytest.raises(ValueError, match="model.heads"):
        ModelConfig(d_model=30, heads=4)


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_dropout_drops_p_and_keeps_the_expectation(p):
    from nmt.model import dropout

    torch.manual_seed(0)
    x = torch.full((1000, 1000), 2.0)
    y = dropout(x, p, training=True)
    assert abs((y == 0).float().mean().item() - p) < 0.003  # 1M draws: sd ~0.0005
    assert abs(y.mean().item() - 2.0) < 0.01
    assert y.unique().tolist() == pytest.approx([0.0, 2.0 * 65536 / (65536 - round(p * 65536))])
    assert dropout(x, p, training=False) is x
    torch.manual_seed(0)
    assert torch.equal(dropout(x, p, training=True), y)  # the seed decides the mask
