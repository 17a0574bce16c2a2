"""AKL, adaptive KL (Wu et al., COLING 2025), as a divergence from outside the package.

Per token, the teacher's distribution p is split at the cumulative probability mu into a head (its most
likely tokens) and a tail. The student's gaps to the teacher there, g_head = sum_head |p_v - q_v| and
g_tail = sum_tail |p_v - q_v|, weigh forward against reverse KL:

    AKL(p, q) = g_head / (g_head + g_tail) * KL(p || q) + g_tail / (g_head + g_tail) * KL(q || p)

As in the authors' code (wutaiqiang/LLM_KD_AKL, AKL.py): tokens are sorted by teacher probability
(descending); a token is in the tail when the cumulative teacher probability up to and including it
exceeds mu (default 0.5), the most likely token is always in the head; the weights use the student's
probabilities without gradient; both KLs are the full ones (entropy terms included). One deviation: where
the student equals the teacher (g_head + g_tail = 0) the authors' weights are 0/0 = NaN; here they are
1/2 each (both KLs are 0 there, so the loss is the same 0, without the NaN).

    plugins: [examples/akl.py]
    methods:
      akl: {loss: akl}                    # or {loss: {name: akl, mu: 0.5}}
"""

import torch

from atkd.losses import register_divergence


def akl_weights(lp: torch.Tensor, lq: torch.Tensor, mu: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_head, w_tail) per token from teacher and student log-probabilities [N, V], without gradient."""
    with torch.no_grad():
        p, q = lp.exp(), lq.exp()
        p_sorted, order = p.sort(dim=-1, descending=True)
        gaps = (p_sorted - q.gather(-1, order)).abs()
        tail = p_sorted.cumsum(-1) > mu
        tail[..., 0] = False
        g_head = gaps.masked_fill(tail, 0.0).sum(-1)
        g_tail = gaps.masked_fill(~tail, 0.0).sum(-1)
        total = g_head + g_tail
        half = torch.full_like(total, 0.5)
        w_head = torch.where(total > 0, g_head / total.clamp_min(torch.finfo(total.dtype).tiny), half)
        return w_head, 1.0 - w_head


@register_divergence("akl", defaults={"mu": 0.5}, checks={"mu": lambda x: 0.0 < x < 1.0})
def akl(lp: torch.Tensor, lq: torch.Tensor, mu: float = 0.5) -> torch.Tensor:
    """Adaptive KL per token: head-gap weight x KL(p||q) + tail-gap weight x KL(q||p); lp: teacher, lq:
    student log-probabilities, [N, V]."""
    w_head, w_tail = akl_weights(lp, lq, mu)
    forward = (lp.exp() * (lp - lq)).sum(-1)
    reverse = (lq.exp() * (lq - lp)).sum(-1)
    return w_head * forward + w_tail * reverse
