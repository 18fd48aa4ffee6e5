"""A transform for temporal mini-batches that ``use_RTE`` layers read."""
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform


class RelativeEdgeTime(BaseTransform):
    r"""Writes, on every edge type of a temporal mini-batch (from a loader
    with ``time_attr``, so disjoint: every node belongs to one seed), the
    time of each edge relative to its example's seed:
    :math:`t_{\mathrm{seed}(j)} - t_i` for an edge :math:`i \to j`, which
    is :math:`\ge 0` (no neighbour is later than its seed). This is the
    ``edge_time`` that ``use_RTE`` layers (pyHGT's relative temporal
    encoding) take.

    Args:
        time_attr (str, optional): The node attribute holding times, as
            given to the loader. (default: :obj:`"time"`)
        key (str, optional): The edge attribute to write; an edge type that
            has it already is an error, never overwritten.
            (default: :obj:`"edge_time"`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` batch with
          ``batch`` on every node type and ``time_attr`` on the source
          types (and ``seed_time`` on the input type where the loader was
          given ``input_time``).
        - **output:** the same batch with ``key`` :math:`(|\mathcal{E}|)`
          on every edge type.
    """
    def __init__(self, time_attr: str = 'time', key: str = 'edge_time'):
        self.time_attr = time_attr
        self.key = key

    def forward(self, data: HeteroData) -> HeteroData:
        seeds = next((s for s in data.node_stores if 'batch_size' in s),
                     None)
        if seeds is None or 'batch' not in seeds:
            raise ValueError("'data' is no temporal mini-batch: "
                             "RelativeEdgeTime takes batches of a "
                             "neighbour loader with 'time_attr'")
        # the seeds come first; their times are the loader's 'input_time'
        # where given, else their own
        seed_time = seeds.seed_time if 'seed_time' in seeds else \
            seeds[self.time_attr][:seeds.batch_size]
        for (src, rel, dst), store in data.edge_items():
            if self.key in store:
                raise ValueError(f"data[{(src, rel, dst)!r}] has '{self.key}' "
                                 f"already; choose another 'key'")
            if self.time_attr not in data[src] or 'batch' not in data[dst]:
                raise ValueError(f"'{src}' has no '{self.time_attr}' or "
                                 f"'{dst}' no 'batch': RelativeEdgeTime "
                                 f"needs node-level times")
            row, col = store.edge_index
            example = data[dst].batch.index_select(0, col)
            store[self.key] = seed_time.index_select(0, example) - \
                data[src][self.time_attr].index_select(0, row)
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(time_attr={self.time_attr!r}, '
                f'key={self.key!r})')
