import torch

from model import PhiLM, preset

EOS = 3
VOCAB = 512


def small_cfg(**kw):
    """2 layers, d 64, 4 heads (head dim 16, rotary 8): fast enough to run many forwards in tests."""
    base = dict(vocab_size=VOCAB, n_layer=2, n_head=4, d_model=64, d_mlp=256, rotary_dim=8, max_seq_len=128,
                eos_token_id=EOS)
    return preset("tiny", **{**base, **kw})


def make_model(seed=0, **kw) -> PhiLM:
    """A random model whose logits are far from uniform (init_std 0.2), so argmax/equality checks bite."""
    torch.manual_seed(seed)
    return PhiLM(small_cfg(init_std=kw.pop("init_std", 0.2), **kw)).eval()


def doc(n, seed):
    """n random non-EOS token ids."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(EOS + 1, VOCAB, (n,), generator=g)
