"""Stage ``compare``: one comparison job (method × setting × network), dispatched to its stage module.

Settings are strings, as in file names and the table: prune → the target sparsity (``0.9``), ternary →
``weights`` or ``weights_acts``, valueset → a value-set name (``pm1``), sharing → the accuracy budget
(``0.99``). Method options (rounds, temperatures, cluster counts, ...) come as a JSON object, the
config's ``compare.<method>`` block.
"""

from __future__ import annotations

from pathlib import Path

from wp import WPError

METHODS = ("prune", "ternary", "valueset", "sharing")
TERNARY_SETTINGS = {"weights": False, "weights_acts": True}


def _number(setting: str, what: str) -> float:
    try:
        return float(setting)
    except ValueError:
        raise WPError(f"{what} setting {setting!r} is not a number: pass e.g. 0.9") from None


def run(method: str, setting: str, data_path: str | Path, ckpt_path: str | Path, network: str, hp: dict,
        options: dict, out_ckpt: str | Path, out_metrics: str | Path, *, pretrain_metrics: str | Path | None = None,
        seed: int = 0, device: str = "auto", stop_after_epoch: int | None = None) -> dict:
    """``stop_after_epoch`` (tests): SIGKILL after that training epoch (counted over all prune rounds)."""
    if method == "prune":
        from wp.stages import compare_prune

        return compare_prune.run(data_path, ckpt_path, network, hp, _number(setting, "prune"), out_ckpt, out_metrics,
                                 rounds=int(options.get("rounds", 3)), seed=seed, device=device,
                                 stop_after_epoch=stop_after_epoch)
    if method == "ternary":
        from wp.stages import compare_ternary

        if setting not in TERNARY_SETTINGS:
            raise WPError(f"ternary setting {setting!r} is unknown: use {' or '.join(TERNARY_SETTINGS)}")
        return compare_ternary.run(data_path, ckpt_path, network, hp, out_ckpt, out_metrics,
                                   activations=TERNARY_SETTINGS[setting], seed=seed, device=device,
                                   stop_after_epoch=stop_after_epoch)
    if method == "valueset":
        from wp.stages import compare_valueset

        t = options.get("temperature", {})
        return compare_valueset.run(data_path, ckpt_path, network, hp, setting, out_ckpt, out_metrics,
                                    t0=float(t.get("start", 1.0)), decay=float(t.get("decay", 0.97)),
                                    t_min=float(t.get("min", 1e-5)), sharpness=float(options.get("sharpness", 1e-3)),
                                    quantize_first=bool(options.get("quantize_first", False)),
                                    quantize_last=bool(options.get("quantize_last", False)), seed=seed, device=device,
                                    stop_after_epoch=stop_after_epoch)
    if method == "sharing":
        from wp.stages import compare_sharing

        if pretrain_metrics is None:
            raise WPError("sharing needs the float network's metrics: pass --pretrain-metrics pretrained.json")
        return compare_sharing.run(data_path, ckpt_path, pretrain_metrics, network, _number(setting, "sharing"),
                                   out_ckpt, out_metrics, clusters=[int(k) for k in options.get("clusters", compare_sharing.DEFAULT_CLUSTERS)],
                                   val_images=int(options.get("val_images", 1000)), max_iter=int(options.get("max_iter", 100)),
                                   seed=seed, device=device)
    raise WPError(f"unknown comparison method {method!r}: use one of {', '.join(METHODS)}")
