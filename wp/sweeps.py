"""Which precision-sweep jobs a config asks for (Tables 5 and 6), shared by the workflow and the tables."""

from __future__ import annotations

from wp import WPError, paper

DEFAULT_RETRAIN_BITS = [4, 3]


def lut_label(bits: int | None) -> str:
    """The LUT bit width as it appears in file names: ``"8"``, or ``"none"`` for no table."""
    return "none" if bits is None else str(int(bits))


def parse_lut(label: str) -> int | None:
    """Inverse of :func:`lut_label`."""
    if label == "none":
        return None
    try:
        return int(label)
    except ValueError:
        raise WPError(f"LUT bits {label!r} are not a number: give an integer or 'none'") from None


def retrain_bits(config: dict, network: str) -> list[int]:
    """Activation bit widths at which ``network`` is retrained for Table 6 (``sweeps.table6.retrain_bits``:
    null = the paper's choice per network, a list for all networks, or a per-network mapping)."""
    setting = config["sweeps"]["table6"]["retrain_bits"]
    if setting is None:
        return list(paper.RETRAIN_BITS.get(network, DEFAULT_RETRAIN_BITS))
    if isinstance(setting, dict):
        return list(setting.get(network, paper.RETRAIN_BITS.get(network, DEFAULT_RETRAIN_BITS)))
    return list(setting)
