"""Which edges explain a movie's predicted genre? PyG's ``Explainer`` with
``GNNExplainer`` on an IMDB model built on ``torch_geometric_hgt.HGTConv``.

    pip install --no-deps graphdatascience && pip install pandas pyarrow
    python examples/imdb_explain.py               # ~1 min on 2 cores
    python examples/imdb_explain.py --smoke       # seconds (CI)

The model and data are ``imdb_pyg_dropin.py``'s (movies, directors,
actors; two HGT layers). After training, GNNExplainer learns one mask per
edge type over the edges that reach the explained movie (PyG sets them
with ``set_hetero_masks``; our layer multiplies each message by its mask
after attention, as PyG's ``explain_message`` does). Prints the most
important edges of each edge type and writes ``imdb_explain.png`` (a
panel per edge type) to ``--out``. The same model on PyG's own
``HGTConv`` cannot be explained: its masks never reach the layer, and
PyG raises "Could not compute gradients for edge masks".
"""
import argparse
import sys
from pathlib import Path

import torch
from torch_geometric.explain import Explainer, GNNExplainer
from torch_geometric.nn import HGTConv as PyGHGTConv

sys.path.insert(0, str(Path(__file__).parent))
from imdb_pyg_dropin import HGT, load, train  # noqa: E402

import torch_geometric_hgt  # noqa: E402

GENRES = ['action', 'comedy', 'drama']


def explainer_for(model, epochs: int) -> Explainer:
    return Explainer(
        model, algorithm=GNNExplainer(epochs=epochs),
        explanation_type='model', node_mask_type=None,
        edge_mask_type='object',
        model_config=dict(mode='multiclass_classification',
                          task_level='node', return_type='raw'))


def top_edges(explanation, data, k: int):
    """``{edge type: [(weight, source, destination)]}``, the ``k`` largest
    mask values per edge type (nodes as 'type #id')."""
    out = {}
    for et in data.edge_types:
        mask = explanation[et].edge_mask
        if mask.numel() == 0 or mask.max() <= 0:
            continue
        values, order = mask.topk(min(k, int((mask > 0).sum())))
        ei = data[et].edge_index[:, order]
        out[et] = [(float(v), f'{et[0]} #{int(s)}', f'{et[2]} #{int(d)}')
                   for v, s, d in zip(values, ei[0], ei[1])]
    return out


def plot(top, movie: int, path: Path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(top), figsize=(4.5 * len(top), 3.2),
                             squeeze=False)
    for ax, (et, rows) in zip(axes[0], top.items()):
        labels = [f'{s} -> {d}' for _, s, d in rows][::-1]
        ax.barh(labels, [w for w, _, _ in rows][::-1])
        ax.set_title(f'{et[0]} -{et[1]}-> {et[2]}', fontsize=9)
        ax.set_xlabel('edge mask')
        ax.tick_params(axis='y', labelsize=7)
    fig.suptitle(f'Most important edges for movie #{movie}')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=40)
    p.add_argument('--explain-epochs', type=int, default=100)
    p.add_argument('--top', type=int, default=5)
    p.add_argument('--out', default='.')
    p.add_argument('--smoke', action='store_true')
    args = p.parse_args()
    if args.smoke:
        args.epochs, args.explain_epochs = 3, 5
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    data = load(seed=0)
    torch.manual_seed(0)
    model = HGT(torch_geometric_hgt.HGTConv, 32, 3, 2, 2, data.metadata())
    with torch.no_grad():  # lazy linears
        model(data.x_dict, data.edge_index_dict)
    _, _, acc, _ = train(model, data, args.epochs, 0.005)
    print(f'trained {args.epochs} epochs: test accuracy {acc:.3f}')

    movie = int(data['movie'].test_mask.nonzero()[0])
    explanation = explainer_for(model, args.explain_epochs)(
        data.x_dict, data.edge_index_dict, index=movie)
    genre = GENRES[int(explanation.prediction[movie].argmax())]
    print(f'movie #{movie}: predicted {genre}; the edges that explain it:')
    top = top_edges(explanation, data, args.top)
    for et, rows in top.items():
        print(f'  {et[0]} -{et[1]}-> {et[2]}:')
        for w, s, d in rows:
            print(f'    {w:.3f}  {s} -> {d}')
    path = Path(args.out) / 'imdb_explain.png'
    plot(top, movie, path)
    print(f'wrote {path}')

    # the same model on PyG's HGTConv: its masks never reach the layer
    pyg = HGT(PyGHGTConv, 32, 3, 2, 2, data.metadata())
    with torch.no_grad():
        pyg(data.x_dict, data.edge_index_dict)
    pyg.load_state_dict(model.state_dict())
    try:
        explainer_for(pyg, 1)(data.x_dict, data.edge_index_dict,
                              index=movie)
        print("PyG's HGTConv: explained")
    except ValueError as error:
        print(f"PyG's HGTConv: {error}")


if __name__ == '__main__':
    main()
