"""PyG's explanation masks reach HGTConv: set the way PyG's explainers set
them for heterogeneous models (``set_hetero_masks``), they act as PyG's
``MessagePassing.explain_message`` (each message times the mask, after
attention), so outputs and the masks' gradients equal PyG's HGTConv given
the concatenated mask; and PyG's Explainer returns per-edge-type masks."""
import pytest
import torch
from test_hetero import BACKEND_NAMES, awkward_graph, randomized_pair
from torch_geometric.explain import AttentionExplainer, Explainer, GNNExplainer
from torch_geometric.explain.algorithm.utils import (clear_masks,
                                                     set_hetero_masks)
from torch_geometric.nn import Linear

from torch_geometric_hgt import HGTConv


def masks_for(edge_index_dict, explained, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {et: torch.nn.Parameter(torch.randn(ei.size(1), generator=g,
                                               dtype=torch.float64))
            for et, ei in edge_index_dict.items() if et in explained}


@pytest.mark.parametrize('backend', BACKEND_NAMES)
@pytest.mark.parametrize('apply_sigmoid', [True, False])
@pytest.mark.parametrize('explained', ['all', 'some'])
def test_masks_equal_pyg_explain_message(backend, apply_sigmoid, explained):
    x_dict, edge_index_dict, metadata = awkward_graph()
    pyg, ours = randomized_pair(metadata, backend=backend)
    pyg, ours = pyg.double(), ours.double()
    x_dict = {k: v.double() for k, v in x_dict.items()}
    types = list(edge_index_dict) if explained == 'all' else \
        [('paper', 'cites', 'paper'), ('author', 'writes', 'paper')]
    ours_masks = masks_for(edge_index_dict, types)
    pyg_masks = masks_for(edge_index_dict, types)
    set_hetero_masks(ours, ours_masks, edge_index_dict, apply_sigmoid)
    # PyG's layer: one mask over all its edges, in the dict's order
    # (ones, untrained, where an edge type is not explained)
    full = torch.cat([
        pyg_masks[et] if et in pyg_masks else
        torch.full((ei.size(1), ), 1e9 if apply_sigmoid else 1.0,
                   dtype=torch.float64)
        for et, ei in edge_index_dict.items()])
    pyg.explain = True
    pyg._edge_mask = full
    pyg._apply_sigmoid = apply_sigmoid
    outs = []
    for conv, masks in ((ours, ours_masks), (pyg, pyg_masks)):
        g = torch.Generator().manual_seed(1)  # the same loss for both
        out = conv(x_dict, edge_index_dict)
        loss = sum((v * torch.randn(v.shape, generator=g,
                                    dtype=torch.float64)).sum()
                   for v in out.values())
        loss.backward()
        outs.append((out, {et: m.grad for et, m in masks.items()}))
    (out1, grad1), (out2, grad2) = outs
    assert out1.keys() == out2.keys()
    for nt in out1:
        torch.testing.assert_close(out1[nt], out2[nt], atol=1e-10, rtol=0)
    for et in types:
        # every non-empty explained type gets gradient
        assert grad1[et].shape == pyg_masks[et].shape
        if grad1[et].numel():
            assert grad1[et].abs().sum() > 0
        torch.testing.assert_close(grad1[et], grad2[et], atol=1e-10, rtol=0)
    # the masks change the result: without them it differs
    clear_masks(ours)
    plain = ours(x_dict, edge_index_dict)
    assert not torch.allclose(plain['paper'], out1['paper'])


def test_bad_masks_are_errors_naming_the_edge_type():
    x_dict, edge_index_dict, metadata = awkward_graph()
    conv = HGTConv(-1, 16, metadata, heads=2)
    et = ('paper', 'cites', 'paper')
    set_hetero_masks(conv, {et: torch.zeros(3)}, edge_index_dict)
    with pytest.raises(ValueError, match=r"edge mask of edge type \('paper"):
        conv(x_dict, edge_index_dict)
    clear_masks(conv)
    assert conv(x_dict, edge_index_dict)['paper'].shape == (30, 16)


def test_slots_add_no_state():
    """The mask slots hold no parameters: checkpoints are PyG's."""
    _, _, metadata = awkward_graph()
    pyg, ours = randomized_pair(metadata)
    assert ours.state_dict().keys() == pyg.state_dict().keys()


class Model(torch.nn.Module):
    def __init__(self, metadata, classes=3):
        super().__init__()
        self.lin = torch.nn.ModuleDict({nt: Linear(-1, 16)
                                        for nt in metadata[0]})
        self.convs = torch.nn.ModuleList([HGTConv(16, 16, metadata, heads=2)
                                          for _ in range(2)])
        self.out = Linear(16, classes)

    def forward(self, x_dict, edge_index_dict):
        x = {nt: self.lin[nt](v).relu() for nt, v in x_dict.items()}
        for conv in self.convs:
            x = {**x, **conv(x, edge_index_dict)}
        return self.out(x['paper']).log_softmax(-1)


def gnn_explainer():
    return GNNExplainer(epochs=5)


def captum_explainer():
    pytest.importorskip('captum')
    from torch_geometric.explain import CaptumExplainer
    return CaptumExplainer('IntegratedGradients')


@pytest.mark.parametrize('algorithm', [gnn_explainer, captum_explainer])
def test_explainers_return_masks_per_edge_type(algorithm):
    """GNNExplainer (which trains the masks) and CaptumExplainer (whose
    attributions flow through them) explain a model built on our layer,
    where PyG's own HGTConv raises: the edges reaching paper 3 get weight,
    an edge type that cannot reach it none."""
    x_dict, edge_index_dict, metadata = awkward_graph()
    # PyG's explainers cannot size masks of a type without nodes
    x_dict.pop('venue')
    edge_index_dict.pop(('paper', 'in', 'venue'))
    metadata = (list(x_dict), [et for et in metadata[1] if 'venue' not in
                               et])
    torch.manual_seed(0)
    model = Model(metadata)
    model(x_dict, edge_index_dict)  # lazy sizes
    explainer = Explainer(
        model, algorithm=algorithm(), explanation_type='model',
        node_mask_type='attributes', edge_mask_type='object',
        model_config=dict(mode='multiclass_classification',
                          task_level='node', return_type='log_probs'))
    explanation = explainer(x_dict, edge_index_dict, index=3)
    masks = {et: explanation[et].edge_mask for et in edge_index_dict}
    for et, ei in edge_index_dict.items():
        assert masks[et].shape == (ei.size(1), )
    assert masks[('paper', 'cites', 'paper')].abs().max() > 0
    assert masks[('paper', 'has_topic', 'field')].abs().sum() == 0


def test_pg_explainer_explains_per_edge_type():
    """PGExplainer (trained on the model's embeddings, which it reads from
    our layer's outputs) refuses to explain before training and then
    returns a mask in [0, 1] per edge of every type (PyG's case
    ``test_pg_explainer_native_hetero`` with our layer)."""
    from torch_geometric.explain import PGExplainer
    x_dict, edge_index_dict, metadata = awkward_graph()
    # PGExplainer reads the last layer's output of every edge type's
    # endpoints: no type may be only a source ('institution')
    for nt, et in (('venue', ('paper', 'in', 'venue')),
                   ('institution', ('institution', 'employs', 'author'))):
        x_dict.pop(nt)
        edge_index_dict.pop(et)
    metadata = (list(x_dict), [et for et in metadata[1]
                               if et[0] in x_dict and et[2] in x_dict])
    torch.manual_seed(0)
    model = Model(metadata)
    model(x_dict, edge_index_dict)  # lazy sizes
    target = model(x_dict, edge_index_dict).argmax(-1)
    explainer = Explainer(
        model, algorithm=PGExplainer(epochs=2), explanation_type='phenomenon',
        edge_mask_type='object',
        model_config=dict(mode='multiclass_classification',
                          task_level='node', return_type='log_probs'))
    with pytest.raises(ValueError, match='not yet fully trained'):
        explainer(x_dict, edge_index_dict, target=target, index=3)
    for epoch in range(2):
        loss = explainer.algorithm.train(epoch, model, x_dict,
                                         edge_index_dict, target=target,
                                         index=3)
        assert isinstance(loss, float) and loss == loss
    explanation = explainer(x_dict, edge_index_dict, target=target, index=3)
    for et, ei in edge_index_dict.items():
        mask = explanation[et].edge_mask
        assert mask.shape == (ei.size(1), )
        assert bool(((mask >= 0) & (mask <= 1)).all())


def test_attention_explainer_reads_our_attention():
    """PyG's AttentionExplainer gets each layer's attention per edge type:
    with one layer and the mean over heads, the mask of an edge into the
    explained node is its attention weight (as
    ``return_attention_weights`` gives it)."""
    x_dict, edge_index_dict, metadata = awkward_graph()
    x_dict.pop('venue')
    edge_index_dict.pop(('paper', 'in', 'venue'))
    metadata = (list(x_dict), [et for et in metadata[1] if 'venue' not in
                               et])

    class OneLayer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = HGTConv(-1, 16, metadata, heads=2)

        def forward(self, x_dict, edge_index_dict):
            return self.conv(x_dict, edge_index_dict)['paper'] \
                .log_softmax(-1)

    torch.manual_seed(0)
    model = OneLayer()
    _, att = model.conv(x_dict, edge_index_dict,
                        return_attention_weights=True)
    explainer = Explainer(
        model, algorithm=AttentionExplainer(reduce='mean'),
        explanation_type='model', edge_mask_type='object',
        model_config=dict(mode='multiclass_classification',
                          task_level='node', return_type='log_probs'))
    explanation = explainer(x_dict, edge_index_dict, index=3)
    et = ('paper', 'cites', 'paper')
    mask = explanation[et].edge_mask
    into = edge_index_dict[et][1] == 3
    assert into.any()
    torch.testing.assert_close(mask[into], att[et][1].mean(-1)[into])
