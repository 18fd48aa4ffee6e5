"""Direct, per-edge implementations of the spec, written independently of
the package's kernels (no folding, no typed GEMMs): gathered per-edge weights
and an explicit per-target softmax loop. Small graphs only."""
import math

import torch
import torch.nn.functional as F


def _stack(lins, attr):
    return torch.stack([getattr(lin, attr) for lin in lins])


def spec_sparse(p, x, node_type, edge_index, edge_type, edge_time=None,
                edge_mask=None):
    """The sparse layer of the spec with the weights of module ``p``;
    ``edge_mask`` multiplies each edge's message after the softmax (PyG's
    ``explain_message``)."""
    N, H, d = x.size(0), p.n_heads, p.d_k
    s, t = edge_index
    xs = x[s]
    if p.use_RTE:
        xs = xs + p.emb.lin(p.emb.emb.weight[edge_time])
    ts, tt = node_type[s], node_type[t]
    K = torch.einsum('eoi,ei->eo', _stack(p.k_linears, 'weight')[ts], xs) \
        + _stack(p.k_linears, 'bias')[ts]
    V = torch.einsum('eoi,ei->eo', _stack(p.v_linears, 'weight')[ts], xs) \
        + _stack(p.v_linears, 'bias')[ts]
    Q = torch.einsum('eoi,ei->eo', _stack(p.q_linears, 'weight')[tt], x[t]) \
        + _stack(p.q_linears, 'bias')[tt]
    K, V, Q = (m.view(-1, H, d) for m in (K, V, Q))
    agg, att = spec_edge_phase(Q, K, V, t, edge_type, p.relation_att,
                               p.relation_pri, p.relation_msg, N, edge_mask)
    agg = agg.view(N, -1)
    P = F.one_hot(node_type, p.num_node_types).to(x)
    return spec_update(p, agg, x, P), att


def spec_edge_phase(Q, K, V, dst, edge_type, att, pri, msg, num_nodes,
                    edge_mask=None):
    """``(agg [N, H, d], alpha [E, H])`` from per-edge queries (of the
    target), keys and values ``[E, H, d]``: the relation transforms per
    edge, then an explicit softmax per target."""
    d = Q.size(-1)
    KA = torch.einsum('ehd,ehdf->ehf', K, att[edge_type])
    score = (Q * KA).sum(-1) * pri[edge_type] / math.sqrt(d)
    message = torch.einsum('ehd,ehdf->ehf', V, msg[edge_type])
    agg = [Q.new_zeros(Q.shape[1:]) for _ in range(num_nodes)]
    alpha = torch.zeros_like(score)
    for n in range(num_nodes):
        m = dst == n
        if bool(m.any()):
            a = torch.softmax(score[m], dim=0)
            w = a if edge_mask is None else a * edge_mask[m].unsqueeze(-1)
            agg[n] = (w.unsqueeze(-1) * message[m]).sum(0)
            alpha = alpha.index_put((m.nonzero().view(-1), ), a)
    if num_nodes == 0:
        return Q.new_zeros(0, *Q.shape[1:]), alpha
    return torch.stack(agg), alpha


def spec_attention(q, k, v, edge_index, edge_type, att, pri, msg, rte=None,
                   edge_mask=None):
    """:func:`~torch_geometric_hgt.functional.hgt_attention` by its
    definition: per-edge gathers (``rte = (table, row)`` adds
    ``table[row]`` to each edge's key and value) and
    :func:`spec_edge_phase`."""
    s, t = edge_index
    K, V = k[s], v[s]
    if rte is not None:
        kv = rte[0][rte[1]].view(-1, 2, *k.shape[1:])
        K, V = K + kv[:, 0], V + kv[:, 1]
    return spec_edge_phase(q[t], K, V, t, edge_type, att, pri, msg,
                           q.size(0), edge_mask)


def spec_update(p, agg, x, P):
    """``sum_t P(t) * update_t(agg, x)`` per row (hard types: one-hot P)."""
    outs = []
    for typ in range(p.num_node_types):
        y = p.drop(p.a_linears[typ](F.gelu(agg)))
        if p.in_dim == p.out_dim:
            g = torch.sigmoid(p.skip[typ])
            y = g * y + (1 - g) * x
        if p.use_norm:
            y = p.norms[typ](y)
        outs.append(y)
    return torch.einsum('...t,t...f->...f', P, torch.stack(outs))


def spec_legacy(p, x, P, adj, E):
    """The legacy dense layer, pair by pair (row = target ``i``, column =
    source ``j``), expanding every (s, t, r) combination."""
    B, N, _ = x.shape
    H, d, T, R = p.n_heads, p.d_k, p.num_node_types, p.num_relations
    outs = []
    for b in range(B):
        q = torch.stack([p.q_linears[t](x[b]) for t in range(T)])  # [T,N,F]
        k = torch.stack([p.k_linears[t](x[b]) for t in range(T)])
        v = torch.stack([p.v_linears[t](x[b]) for t in range(T)])
        q, k, v = (m.view(T, N, H, d) for m in (q, k, v))
        agg = []
        for i in range(N):
            res_att, res_msg = [], []
            for j in range(N):
                att_ij = x.new_zeros(H)
                msg_ij = x.new_zeros(H, d)
                for s in range(T):
                    for t in range(T):
                        for r in range(R):
                            c = P[b, i, t] * P[b, j, s] * E[b, i, j, r] * \
                                adj[b, i, j]
                            ka = torch.einsum('hd,hdf->hf', k[s, j],
                                              p.relation_att[r])
                            a = c * p.relation_pri[r] / math.sqrt(d) * \
                                (q[t, i] * ka).sum(-1)
                            vm = torch.einsum('hd,hdf->hf', v[s, j],
                                              p.relation_msg[r])
                            att_ij = att_ij + a
                            msg_ij = msg_ij + a.unsqueeze(-1) * vm
                res_att.append(att_ij)
                res_msg.append(msg_ij)
            res_att, res_msg = torch.stack(res_att), torch.stack(res_msg)
            if float(res_att.detach().sum()) > 1e-6:
                w = torch.softmax(res_att, dim=0)  # over all j, per head
                agg.append((w.unsqueeze(-1) * res_msg).sum(0).reshape(-1))
            else:
                agg.append(x.new_zeros(H * d))
        outs.append(spec_update(p, torch.stack(agg), x[b], P[b]))
    return torch.stack(outs)


def spec_dense(p, x, P, adj, E, node_mask=None):
    """The dense soft layer, pair by pair (``adj[b, j, i]``: edge j -> i)."""
    B, N, _ = x.shape
    H, d, T, R = p.n_heads, p.d_k, p.num_node_types, p.num_relations
    if node_mask is None:
        node_mask = torch.ones(B, N, dtype=torch.bool)
    outs = []
    for b in range(B):
        def mix(lins, n):
            return sum(P[b, n, t] * lins[t](x[b, n]) for t in range(T))
        Q = [mix(p.q_linears, n).view(H, d) for n in range(N)]
        K = [mix(p.k_linears, n).view(H, d) for n in range(N)]
        Vv = [mix(p.v_linears, n).view(H, d) for n in range(N)]
        agg = []
        for i in range(N):
            # every unmasked source: adj = 0 still has a gradient
            srcs = [j for j in range(N) if node_mask[b, j] and
                    node_mask[b, i]]
            if not any(float(adj[b, j, i].detach()) > 0 for j in srcs):
                agg.append(x.new_zeros(H * d))
                continue
            scores, msgs = [], []
            for j in srcs:
                sc = sum(E[b, j, i, r] * p.relation_pri[r] * (
                    Q[i] * torch.einsum('hd,hdf->hf', K[j],
                                        p.relation_att[r])).sum(-1)
                    for r in range(R)) / math.sqrt(d)
                msg = sum(E[b, j, i, r] * torch.einsum(
                    'hd,hdf->hf', Vv[j], p.relation_msg[r]) for r in range(R))
                scores.append(sc)
                msgs.append(msg)
            scores = torch.stack(scores)  # [S, H]
            w = adj[b, srcs, i].unsqueeze(-1) * torch.exp(
                scores - scores.max(0).values)
            alpha = w / w.sum(0)
            agg.append((alpha.unsqueeze(-1) * torch.stack(msgs)).sum(0)
                       .reshape(-1))
        out = spec_update(p, torch.stack(agg), x[b], P[b])
        outs.append(out * node_mask[b].unsqueeze(-1))
    return torch.stack(outs)
