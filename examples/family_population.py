"""The users' pipeline end to end on synthetic households.

1. Households with the users' schema (examples/households.py).
2. A frozen HGT *critic* (DenseHGT + mean readout) learns to tell real
   households from corrupted ones (relations that contradict ages).
3. A GraphVAE (MLP encoder, decoder emitting adjacency / relation / type
   logits) is trained end to end: reconstruction + KL + the critic's score
   of the decoded *soft* graphs (soft_graph_from_logits, Gumbel-softmax), so
   the critic's gradient flows through the soft graphs into the decoder.
   Why this objective: reconstruction teaches the marginals, but only a
   model that reads the whole graph (the HGT critic) can reward generated
   households whose relations agree with their members' ages, which is what
   a synthetic population needs. The metric is the share of households
   sampled from the prior that are valid (relations fit the members' ages,
   nobody isolated), next to their sizes and relation counts.
4. dense_to_batch of hard generated graphs -> UltraFastHGTConv equals
   DenseHGTConv on the same graphs.
5. The users' original DifferentiableHGT, timed against its loop form.

    python examples/family_population.py            # ~1 min on 2 cores
    python examples/family_population.py --families 33169 --epochs 20
    python examples/family_population.py --smoke    # seconds (CI)
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from households import N_MAX, R, T, make_households, valid  # noqa

from torch_geometric_hgt import (DenseHGT, DenseHGTConv,  # noqa: E402
                                 DifferentiableHGT,
                                 LoopDifferentiableDenseHGTConv, SoftGraph,
                                 UltraFastHGTConv, dense_to_batch,
                                 keep_freed_memory, soft_graph_from_logits)


class Critic(torch.nn.Module):
    """P(real) of a (soft) household: DenseHGT, existence-weighted mean."""
    def __init__(self, hidden: int):
        super().__init__()
        self.hgt = DenseHGT(hidden, hidden, hidden, T, R, n_heads=4,
                            n_layers=2, dropout=0.0)
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, g: SoftGraph) -> torch.Tensor:
        h = self.hgt(g)
        w = g.node_exist if g.node_exist is not None else \
            g.node_mask.float()
        pooled = (h * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True)
        return self.out(pooled).squeeze(-1)


def corrupt(P, adj, E, mask, g):
    """Negatives: every edge's relation redrawn uniformly (symmetrically)."""
    r = torch.randint(0, R, E.shape[:3], generator=g).triu()
    r = r + r.triu(1).transpose(1, 2)
    return P, adj, F.one_hot(r, R).float(), mask


def hard_graph(P, adj, E, mask):
    """A SoftGraph of real households (uniform rows where undefined)."""
    P = torch.where(mask.unsqueeze(-1), P, torch.full_like(P, 1 / T))
    E = torch.where(adj.unsqueeze(-1) > 0, E, torch.full_like(E, 1 / R))
    return SoftGraph(P, adj, E, mask)


class GraphVAE(torch.nn.Module):
    def __init__(self, latent: int = 16, hidden: int = 256):
        super().__init__()
        n_in = N_MAX * T + N_MAX * N_MAX * (R + 1)
        self.enc = torch.nn.Sequential(torch.nn.Linear(n_in, hidden),
                                       torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, 2 * latent))
        self.dec = torch.nn.Sequential(
            torch.nn.Linear(latent, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, N_MAX * N_MAX * (1 + R) + N_MAX * T))
        self.latent = latent

    def encode(self, P, adj, E):
        flat = torch.cat([P.flatten(1), adj.flatten(1), E.flatten(1)], 1)
        mu, logvar = self.enc(flat).chunk(2, -1)
        return mu, logvar

    def decode(self, z):
        out = self.dec(z)
        B, nn_ = z.size(0), N_MAX * N_MAX
        a = out[:, :nn_].view(B, N_MAX, N_MAX)
        a = (a + a.transpose(1, 2)) / 2  # GraphVAE adjacency is symmetric
        e = out[:, nn_:nn_ * (1 + R)].view(B, N_MAX, N_MAX, R)
        e = (e + e.transpose(1, 2)) / 2
        n = out[:, nn_ * (1 + R):].view(B, N_MAX, T)
        return a, e, n


def recon_loss(logits, P, adj, E, mask):
    a, e, n = logits
    exist = torch.diagonal(a, dim1=1, dim2=2)
    off = ~torch.eye(N_MAX, dtype=torch.bool)
    pair = mask.unsqueeze(1) & mask.unsqueeze(2) & off
    loss = F.binary_cross_entropy_with_logits(exist, mask.float())
    loss = loss + F.binary_cross_entropy_with_logits(a[pair], adj[pair])
    loss = loss + F.cross_entropy(n[mask], P[mask].argmax(-1))
    edges = adj > 0
    if edges.any():
        loss = loss + F.cross_entropy(e[edges], E[edges].argmax(-1))
    return loss


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--families', type=int, default=4000)
    p.add_argument('--epochs', type=int, default=40)
    p.add_argument('--critic-epochs', type=int, default=3)
    p.add_argument('--hidden', type=int, default=32)
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--critic-weight', type=float, default=0.5)
    p.add_argument('--out', default='examples/out')
    p.add_argument('--smoke', action='store_true')
    args = p.parse_args()
    if args.smoke:
        args.families, args.epochs, args.critic_epochs = 300, 1, 1
    torch.manual_seed(0)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    keep_freed_memory()  # large CPU temporaries stop paying page faults
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)

    P, adj, E, mask = make_households(args.families, seed=0)
    n_train = int(0.8 * args.families)
    print(f'{args.families} households, mean size '
          f'{mask.sum(1).float().mean():.2f}')

    # 1. the critic
    critic = Critic(args.hidden)
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    for epoch in range(args.critic_epochs):
        perm = torch.randperm(n_train, generator=g)
        for i in tqdm(range(0, n_train, args.batch_size),
                      desc=f'critic epoch {epoch + 1}', leave=False,
                      disable=None):
            idx = perm[i:i + args.batch_size]
            real = hard_graph(P[idx], adj[idx], E[idx], mask[idx])
            fake = hard_graph(*corrupt(P[idx], adj[idx], E[idx], mask[idx],
                                       g))
            logits = torch.cat([critic(real), critic(fake)])
            target = torch.cat([torch.ones(len(idx)), torch.zeros(len(idx))])
            loss = F.binary_cross_entropy_with_logits(logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
    test = slice(n_train, None)
    with torch.no_grad():
        real = critic(hard_graph(P[test], adj[test], E[test], mask[test]))
        fake = critic(hard_graph(*corrupt(P[test], adj[test], E[test],
                                          mask[test], g)))
    # corrupted graphs without edges are identical to real ones
    has_edge = adj[test].flatten(1).any(1)
    acc = ((real > 0).float().mean() +
           (fake[has_edge] < 0).float().mean()) / 2
    print(f'critic held-out accuracy: {acc:.3f}')
    critic.requires_grad_(False)

    # 2. the GraphVAE, trained through the soft graphs
    vae = GraphVAE()
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    curve = []
    for epoch in range(args.epochs):
        perm = torch.randperm(n_train, generator=g)
        bar = tqdm(range(0, n_train, args.batch_size),
                   desc=f'GraphVAE epoch {epoch + 1}', leave=False,
                   disable=None)
        for i in bar:
            idx = perm[i:i + args.batch_size]
            mu, logvar = vae.encode(P[idx], adj[idx], E[idx])
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            logits = vae.decode(z)
            rec = recon_loss(logits, P[idx], adj[idx], E[idx], mask[idx])
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
            # the prior's samples, as soft graphs, scored by the critic
            zp = torch.randn(len(idx), vae.latent, generator=g)
            soft = soft_graph_from_logits(*vae.decode(zp), temperature=0.5,
                                          generator=g)
            realism = F.binary_cross_entropy_with_logits(
                critic(soft), torch.ones(len(idx)))
            loss = rec + 0.01 * kl + args.critic_weight * realism
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append((rec.item(), realism.item()))
            bar.set_postfix(rec=f'{rec.item():.3f}',
                            critic=f'{realism.item():.3f}')

    with torch.no_grad():
        zp = torch.randn(2000, vae.latent, generator=g)
        soft = soft_graph_from_logits(*vae.decode(zp), hard=True,
                                      generator=g)
        ok = valid(soft.node_types, soft.adj, soft.edge_types,
                   soft.node_mask)
        size = soft.node_mask.sum(1).float().mean()
        n_edges = (soft.adj > 0.5).flatten(1).sum(1).float().mean() / 2
    real_edges = adj.flatten(1).sum(1).mean() / 2
    print(f'valid generated households (relations fit ages, nobody '
          f'isolated): {ok.float().mean():.3f}; mean size {size:.2f} '
          f'(real {mask.sum(1).float().mean():.2f}), relations per '
          f'household {n_edges:.2f} (real {real_edges:.2f})')

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = range(len(curve))
    ax.plot(steps, [c[0] for c in curve], label='reconstruction')
    ax.plot(steps, [c[1] for c in curve], label='critic (realism) loss')
    ax.set_xlabel('step')
    ax.set_ylabel('loss')
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / 'family_training.png', dpi=100)
    print(f'training curve: {out_dir / "family_training.png"}')

    # 3. hard generated graphs: dense layer == sparse layer on the Batch
    dense = DenseHGTConv(T, T, T, R, 2).eval()
    sparse = UltraFastHGTConv(T, T, T, R, 2).eval()
    sparse.load_state_dict(dense.state_dict())
    hard = soft.hard()
    hard = SoftGraph(hard.node_types, hard.adj, hard.edge_types,
                     hard.node_mask, hard.node_types.clone())
    batch = dense_to_batch(hard)
    with torch.no_grad():
        a = dense(hard.x, hard.node_types, hard.adj, hard.edge_types,
                  hard.node_mask)[hard.node_mask]
        b = sparse(batch.x, batch.node_type, batch.edge_index,
                   batch.edge_type)
    print(f'dense vs sparse on {batch.num_graphs} generated households '
          f'({batch.num_nodes} nodes, {batch.num_edges} edges): max abs '
          f'diff {(a - b).abs().max():.2e}')

    # 4. the users' original model, vectorized vs its loop form
    model = DifferentiableHGT(128, 128, 128, T, R).eval()
    loop = LoopDifferentiableDenseHGTConv(128, 128, T, R, 4).eval()
    loop.load_state_dict(model.layers[0].state_dict())
    n = 8 if not args.smoke else 2
    data = {'node_types': soft.node_types[:n], 'adj_matrix': soft.adj[:n],
            'edge_types': soft.edge_types[:n]}
    with torch.no_grad():
        h = model.input_projection(data['node_types'])
        t0 = time.perf_counter()
        y_loop = loop(h, data['node_types'], data['adj_matrix'],
                      data['edge_types'])
        t_loop = (time.perf_counter() - t0) / n
        layer = model.layers[0]
        t0 = time.perf_counter()
        y_fast = layer(h, data['node_types'], data['adj_matrix'],
                       data['edge_types'])
        t_fast = (time.perf_counter() - t0) / n
        big = {k: v.repeat(1000 // n, 1, 1, *([1] * (v.dim() - 3)))
               for k, v in data.items()}
        t0 = time.perf_counter()
        model(big)
        t_model = (time.perf_counter() - t0) / big['node_types'].size(0)
    print(f'DifferentiableDenseHGTConv vs its loop form: max abs diff '
          f'{(y_loop - y_fast).abs().max():.2e}; {t_loop * 1e3:.1f} ms -> '
          f'{t_fast * 1e3:.2f} ms per family ({n} families); 2-layer model '
          f'at 1000 families: {t_model * 1e3:.3f} ms per family')


if __name__ == '__main__':
    main()
