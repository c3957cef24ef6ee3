"""Pictures with matplotlib (an optional extra: pip install "ferrax[plot]")."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "ferrax[plot]"') from None
    return plt


def plot_history(history, path=None):
    """Loss and metric curves per epoch, training and validation, one panel per metric.

    `history` is a History (from fit) or its `.history` dict. Saves a PNG to `path`
    if given; returns the matplotlib figure.
    """
    plt = _pyplot()
    logs = getattr(history, "history", history)
    names = [k for k in logs if not k.startswith("val_")]
    names.sort(key=lambda k: (k != "loss", k))
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5 * max(len(names), 1), 3.6),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = range(1, len(logs[name]) + 1)
        ax.plot(epochs, logs[name], "o-", label="training")
        if "val_" + name in logs:
            ax.plot(epochs, logs["val_" + name], "s--", label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig
