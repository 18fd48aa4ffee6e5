"""Multi-process mini-batch HGT training with DistributedDataParallel.

    torchrun --nproc_per_node=2 examples/ddp_minibatch.py      # gloo on CPU
    torchrun --nproc_per_node=2 examples/ddp_minibatch.py --smoke
    python examples/ddp_minibatch.py --world 2 --smoke   # one process, the
                                                         # same updates

Every rank holds the graph (``mag_like``) and samples its own shard of the
training papers with ``HGTLoader``: rank ``r`` of ``W`` takes positions
``r::W`` of one seeded permutation, so no two ranks see the same seed in
an epoch, and each batch's sampling is seeded per rank and epoch.
``DistributedDataParallel`` averages the ranks' gradients, so the updates
equal one process that samples the same ``W`` batches per step and
averages their losses (``--world W`` without torchrun), as the test
checks. NCCL is used on CUDA, gloo on CPU.
"""
import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).parent))
from mag_minibatch import HGT, init_lazy, run_batch, split  # noqa: E402

from torch_geometric_hgt.datasets import mag_like  # noqa: E402
from torch_geometric_hgt.loader import HGTLoader  # noqa: E402


def rank_loader(data, train, rank: int, world: int, batch_size: int,
                epoch: int, seed: int = 0) -> HGTLoader:
    """Rank ``rank``'s loader for ``epoch``: its shard of the seeds, its own
    shuffle and sampling seeds."""
    shard = train[rank::world]
    g = torch.Generator().manual_seed(seed + 1000 * epoch + rank)
    return HGTLoader(data, [64, 64], ('paper', shard), batch_size=batch_size,
                     shuffle=True, drop_last=True, generator=g)


def train(data, ranks, world: int, epochs: int, batch_size: int,
          device: torch.device):
    """Trains on the batches of ``ranks`` (this process's rank under
    torchrun, all ``world`` of them in one process) and returns the final
    parameters (flattened) and the losses."""
    train_ids, _, _ = split(data['paper'].num_nodes)
    torch.manual_seed(0)
    model = HGT(data.metadata(), 32, 16)
    init_lazy(model, data)
    model = model.to(device)
    # the last layer's outputs of other types than 'paper' reach no loss
    net = DistributedDataParallel(model, find_unused_parameters=True) \
        if dist.is_initialized() else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for epoch in range(epochs):
        loaders = [rank_loader(data, train_ids, r, world,
                               batch_size // world, epoch) for r in ranks]
        for batches in zip(*loaders):
            # one process standing in for W ranks averages their losses,
            # as DDP averages their gradients
            loss = sum(F.cross_entropy(*run_batch(net, b.to(device)))
                       for b in batches) / len(batches)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    params = torch.cat([p.detach().flatten().cpu()
                        for p in model.parameters()])
    return params, losses


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--scale', type=float, default=0.01)
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--batch-size', type=int, default=512,
                   help='global batch size (split over the ranks)')
    p.add_argument('--world', type=int, default=1,
                   help='without torchrun: ranks to stand in for')
    p.add_argument('--save', help='write final parameters here (rank 0)')
    p.add_argument('--smoke', action='store_true')
    args = p.parse_args()
    if args.smoke:
        args.scale, args.epochs, args.batch_size = 0.002, 1, 128
    if 'WORLD_SIZE' in os.environ:
        dist.init_process_group('nccl' if torch.cuda.is_available()
                                else 'gloo')
        world, rank = dist.get_world_size(), dist.get_rank()
        ranks = [rank]
    else:
        world, rank = args.world, 0
        ranks = list(range(world))
    device = torch.device('cuda', rank % torch.cuda.device_count()) \
        if torch.cuda.is_available() else torch.device('cpu')
    torch.set_num_threads(1)
    data = mag_like(args.scale)
    params, losses = train(data, ranks, world, args.epochs, args.batch_size,
                           device)
    if rank == 0:
        print(f'world size {world}, {len(losses)} steps, loss '
              f'{losses[0]:.4f} -> {losses[-1]:.4f}')
        if args.save:
            torch.save(params, args.save)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
