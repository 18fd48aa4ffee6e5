"""Multi-process data-parallel training of DenseHGT on household graphs.

    torchrun --nproc_per_node=2 examples/ddp_train.py          # gloo on CPU
    torchrun --nproc_per_node=2 examples/ddp_train.py --smoke  # a few steps

Each process reads its shard of the households (``DistributedSampler``);
``DistributedDataParallel`` averages the gradients, so with the same global
batch the updates equal single-process training in expectation (and exactly,
without dropout, as the test checks). NCCL is used on CUDA, gloo on CPU.
The task: predict household size composition (number of children, adults,
elders) from the graph, a simple supervised target.
"""
import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from households import R, T, make_households  # noqa: E402

from torch_geometric_hgt import DenseHGT  # noqa: E402


class SizeModel(torch.nn.Module):
    def __init__(self, hidden: int = 32):
        super().__init__()
        self.hgt = DenseHGT(hidden, hidden, hidden, T, R, n_heads=2,
                            dropout=0.0)
        self.out = torch.nn.Linear(hidden, 3)

    def forward(self, P, adj, E, mask):
        Pn = torch.where(mask.unsqueeze(-1), P, torch.full_like(P, 1 / T))
        En = torch.where(adj.unsqueeze(-1) > 0, E, torch.full_like(E, 1 / R))
        h = self.hgt({'node_types': Pn, 'adj_matrix': adj, 'edge_types': En,
                      'node_mask': mask})
        return self.out(h.sum(1))


def targets(P):
    """Members per generation (children, adults, elders)."""
    return P.view(*P.shape[:2], 3, 2).sum((1, 3))


def train(steps: int, global_batch: int, families: int, seed: int = 0,
          lr: float = 1e-2):
    """Runs on every process; returns the final parameters (flattened)."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = torch.device('cuda', rank % torch.cuda.device_count()) \
        if torch.cuda.is_available() else torch.device('cpu')
    data = TensorDataset(*make_households(families, seed=seed))
    torch.manual_seed(seed)
    model = SizeModel().to(device)
    if world > 1:
        model = DistributedDataParallel(model)
    # the same sampler on one process: rank r of W sees positions r::W of
    # one shared permutation, so a global batch is the same set of graphs
    sampler = DistributedSampler(data, num_replicas=world, rank=rank,
                                 shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(data, batch_size=global_batch // world,
                        sampler=sampler, drop_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    step, epoch, losses = 0, 0, []
    while step < steps:
        sampler.set_epoch(epoch)
        for P, adj, E, mask in loader:
            P, adj, E, mask = (t.to(device) for t in (P, adj, E, mask))
            loss = torch.nn.functional.mse_loss(model(P, adj, E, mask),
                                                targets(P))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            if step >= steps:
                break
        epoch += 1
    params = torch.cat([p.detach().flatten().cpu()
                        for p in model.parameters()])
    return params, losses


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=200)
    p.add_argument('--batch-size', type=int, default=128,
                   help='global batch size (split over processes)')
    p.add_argument('--families', type=int, default=4000)
    p.add_argument('--save', help='write final parameters here (rank 0)')
    p.add_argument('--smoke', action='store_true')
    args = p.parse_args()
    if args.smoke:
        args.steps, args.families = 3, 256
    if 'WORLD_SIZE' in os.environ:
        dist.init_process_group('nccl' if torch.cuda.is_available()
                                else 'gloo')
    torch.set_num_threads(1)
    params, losses = train(args.steps, args.batch_size, args.families)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        world = dist.get_world_size() if dist.is_initialized() else 1
        print(f'world size {world}, {len(losses)} steps, loss '
              f'{losses[0]:.4f} -> '
              f'{sum(losses[-10:]) / len(losses[-10:]):.4f}')
        if args.save:
            torch.save(params, args.save)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
