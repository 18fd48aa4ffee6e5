"""A synthetic household generator with the users' schema, shared by the
examples: 6 member types, 5 symmetric relations, up to 8 members, household
sizes and compositions roughly as in census data, relations consistent with
ages and genders."""
from typing import Tuple

import torch

MEMBER_TYPES = ['Male_Child', 'Female_Child', 'Male_Adult', 'Female_Adult',
                'Male_Elder', 'Female_Elder']
RELATIONS = ['SPOUSE', 'PARENT_CHILD', 'GRANDPARENT_GRANDCHILD', 'SIBLING',
             'EXTENDED_FAMILY']
T, R, N_MAX = 6, 5, 8
CHILD, ADULT, ELDER = 0, 1, 2
SPOUSE, PARENT, GRAND, SIBLING, EXTENDED = range(5)


def member(generation: int, female: bool) -> int:
    return 2 * generation + int(female)


def _household(g: torch.Generator):
    """One household: member types and a list of (i, j, relation)."""
    def rnd():
        return float(torch.rand((), generator=g))
    kind = rnd()
    types, edges = [], []

    def add(generation, female=None):
        female = rnd() < 0.5 if female is None else female
        types.append(member(generation, female))
        return len(types) - 1

    def couple(generation):
        a = add(generation, False)
        if rnd() < 0.97:  # most couples are mixed-gender
            b = add(generation, True)
        else:
            b = add(generation, False)
        edges.append((a, b, SPOUSE))
        return [a, b]

    if kind < 0.28:  # one person
        add(ADULT if rnd() < 0.6 else ELDER)
    elif kind < 0.52:  # couple
        couple(ADULT if rnd() < 0.6 else ELDER)
    else:
        parents = couple(ADULT) if rnd() < 0.8 else [add(ADULT)]
        kids = [add(CHILD) for _ in range(1 + int(rnd() * 3.2))]
        for p in parents:
            edges += [(p, k, PARENT) for k in kids]
        edges += [(a, b, SIBLING) for i, a in enumerate(kids)
                  for b in kids[i + 1:]]
        if kind > 0.86:  # three generations
            elders = couple(ELDER) if rnd() < 0.5 else [add(ELDER)]
            for e in elders:
                edges += [(e, parents[0], PARENT)]
                edges += [(e, k, GRAND) for k in kids]
        if kind > 0.95 and len(types) < N_MAX:  # a relative lives with them
            rel = add(ADULT)
            edges += [(rel, o, EXTENDED) for o in range(len(types) - 1)]
    return types[:N_MAX], [e for e in edges if max(e[:2]) < N_MAX]


def make_households(B: int, seed: int = 0
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                               torch.Tensor]:
    """``node_types [B, 8, 6]`` (one-hot, zero rows for padding), symmetric
    ``adj [B, 8, 8]``, ``edge_types [B, 8, 8, 5]`` (one-hot on edges) and
    ``node_mask [B, 8]``."""
    g = torch.Generator().manual_seed(seed)
    P = torch.zeros(B, N_MAX, T)
    adj = torch.zeros(B, N_MAX, N_MAX)
    E = torch.zeros(B, N_MAX, N_MAX, R)
    for b in range(B):  # data generation, not a model path
        types, edges = _household(g)
        P[b, torch.arange(len(types)), torch.tensor(types)] = 1
        for i, j, r in edges:
            adj[b, i, j] = adj[b, j, i] = 1
            E[b, i, j, r] = E[b, j, i, r] = 1
    return P, adj, E, P.sum(-1) > 0


def consistent(P: torch.Tensor, adj: torch.Tensor, E: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: every edge's relation fits the members' generations
    (the generator's rules), and the graph has at least one member.
    Inputs are hard (argmax is taken)."""
    t = P.argmax(-1)
    gen = t // 2
    gi, gj = gen.unsqueeze(2), gen.unsqueeze(1)
    r = E.argmax(-1)
    diff = (gi - gj).abs()
    ok = torch.zeros_like(adj, dtype=torch.bool)
    ok |= (r == SPOUSE) & (gi == gj) & (gi > CHILD)
    ok |= (r == PARENT) & (diff == 1)
    ok |= (r == GRAND) & (diff == 2)
    ok |= (r == SIBLING) & (gi == gj)
    ok |= (r == EXTENDED) & (gi > CHILD) | (r == EXTENDED) & (gj > CHILD)
    edge = (adj > 0.5) & mask.unsqueeze(1) & mask.unsqueeze(2)
    return (ok | ~edge).all((1, 2)) & mask.any(1)


def valid(P: torch.Tensor, adj: torch.Tensor, E: torch.Tensor,
          mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: :func:`consistent`, and in households of two or more
    every member has a relation (as every generated household does)."""
    edge = (adj > 0.5) & mask.unsqueeze(1) & mask.unsqueeze(2)
    linked = edge.any(2) | ~mask
    single = mask.sum(1) == 1
    return consistent(P, adj, E, mask) & (single | linked.all(1))
