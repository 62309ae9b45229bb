"""Number formatting for the Markdown tables; '—' where a cell did not run."""

DASH = "—"


def ms(v):
    return DASH if v is None else f"{v:.3f}"


def tps(v):
    return DASH if v is None else f"{v:,.1f}"


def count(v):
    return DASH if v is None else f"{v:,}"


def pct(v, digits=1):
    return DASH if v is None else f"{v:.{digits}f} %"


def ratio(v):
    return DASH if v is None else f"{v:.2f}×"


def mb(v):
    return DASH if v is None else f"{v:.1f}"


def signed_ms(v):
    return DASH if v is None else f"{v:+.3f}"


def signed_pct(v):
    return DASH if v is None else f"{v:+.1f} %"


def table(header, rows, numeric=True):
    """Markdown table; the first column (and every column unless numeric)
    left-aligned, figures right-aligned."""
    align = ["---" if i == 0 or not numeric else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
