"""Test probes on transformers models."""

from __future__ import annotations


def vision_grad_norms(model) -> dict[str, float]:
    """Gradient L2 norm per vision-tower part after a backward pass: patch_embed, blocks, merger (Qwen3-VL also
    deepstack_merger_list). All zero (or a part missing) means the video did not reach the loss."""
    import torch

    from vtg.train.policy import vision_tower

    groups: dict[str, list] = {}
    for name, param in vision_tower(model).named_parameters():
        part = name.split(".", 1)[0]
        if param.grad is not None:
            groups.setdefault(part, []).append(param.grad.detach().float().norm())
    return {k: float(torch.stack(v).norm()) for k, v in groups.items()}
