"""figures.py: the metric and curve plots, the misclassified-digit grid, the model summary."""


import matplotlib
import torch

import figures
from model import Net, count_parameters


def test_misclassified_grid_is_5_by_2_with_titles(tmp_path):
    images, labels = torch.randn(10, 1, 28, 28), torch.arange(10)
    fig = figures.plot_misclassified(images, (labels + 1) % 10, labels, "GN", tmp_path / "grid.png")
    axes = fig.axes
    assert len(axes) == 10
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in axes} == {(5, 2)}
    assert axes[0].get_title() == "predicted 1, true 0"
    assert fig._suptitle.get_text() == "GN"
    assert (tmp_path / "grid.png").stat().st_size > 0
    matplotlib.pyplot.close(fig)


def test_metric_and_curve_plots(tmp_path):
    history = [dict(epoch=e, train_loss=1 / e, train_acc=90 + e, test_loss=1 / e, test_acc=91 + e) for e in (1, 2, 3)]
    fig = figures.plot_metric({"BN": history, "GN": history}, "test_loss", tmp_path / "loss.png")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["BN", "GN"]
    accuracy = figures.plot_metric({"BN": history}, "test_acc")
    (line,) = accuracy.axes[0].get_lines()
    assert list(line.get_ydata()) == [8, 7, 6] and accuracy.axes[0].get_yscale() == "log"  # every epoch, as error
    fig2 = figures.plot_curves("BN", history, tmp_path / "curves.png")
    assert len(fig2.axes) == 2
    assert (tmp_path / "loss.png").exists() and (tmp_path / "curves.png").exists()
    matplotlib.pyplot.close("all")


def test_summary_leaves_the_model_untouched(capsys):
    net = Net("B").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    figures.print_summary(net)
    assert f"Total params: {count_parameters(net):,}" in capsys.readouterr().out
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
