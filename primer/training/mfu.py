"""Model FLOPs utilisation: achieved model FLOP/s over the devices' dense peak.

FLOPs per token follow the PaLM appendix B convention (forward + backward = 3x forward, no recomputation
counted): 6 x non-embedding-lookup parameters + 12 x layers x seq x d_model for attention scores. Peaks are
dense bf16 tensor-core TFLOP/s per device from the vendors' data sheets (no sparsity).
"""

from __future__ import annotations

PEAK_BF16_TFLOPS: dict[str, float] = {
    # name fragment (as torch.cuda.get_device_name reports it) -> dense bf16 TFLOP/s
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,  # unknown H100 form factor: the lower (PCIe) figure
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,  # fp16 tensor cores (V100 has no bf16)
    "MI300X": 1307.0,
    "MI250X": 383.0,
}


def flops_per_token(model: dict, seq_len: int) -> float:
    """Training FLOPs (fwd + bwd) per token of a PhiLM with config dict `model` at context `seq_len`."""
    from model.config import ModelConfig, num_params

    cfg = ModelConfig(**model)
    n = num_params(cfg) - cfg.vocab_size * cfg.d_model  # the embedding is a lookup, not a matmul
    return 6.0 * n + 12.0 * cfg.n_layer * seq_len * cfg.d_model


def peak_tflops(device_name: str, configured: float = 0.0) -> float:
    """The configured peak, else the table's entry for this device (longest matching name), else 0."""
    if configured > 0:
        return configured
    hits = [k for k in PEAK_BF16_TFLOPS if k.lower() in device_name.lower()]
    return PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else 0.0


def mfu(tokens_per_s_per_device: float, flops_token: float, peak: float) -> float | None:
    """Fraction of peak, or None when no peak is known (CPU ranks)."""
    if peak <= 0:
        return None
    return tokens_per_s_per_device * flops_token / (peak * 1e12)
