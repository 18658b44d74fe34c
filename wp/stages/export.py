"""Stage ``export``: a pooled checkpoint → the files a microcontroller runtime needs (``.npz``, ``.json``, ``.h``).

The network is built exactly as ``quant_eval`` builds it (:func:`wp.lutnet.load_pooled`,
:func:`~wp.lutnet.act_ranges`: the checkpoint's own ranges when ``act_train`` retrained it,
otherwise ranges calibrated for ``act_bits`` on the same seeded sample of training images; then
:func:`wp.lutnet.convert` with ``lut_bits``-bit tables), and :func:`wp.export.from_lutnet` reads the artifact
off that network. See :mod:`wp.export` for what the files hold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wp import WPError, checkpoint, data, export, lutnet, models, provenance, settings
from wp.checkpoint import check_dataset
from wp.io import sha256
from wp.lutnet import act_ranges, check_trained_bits, load_pooled
from wp import selection
from wp.settings import setting
from wp.sweeps import lut_label, parse_lut
from wp.train import hparams, resolve_device, seed_everything


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True, help="wp{K}.pt, or a checkpoint from act_train (it carries its ranges)")
    p.add_argument("--network", required=True)
    p.add_argument("--act-bits", type=int, required=True)
    setting(p, "--lut-bits", "export.lut_bits", type=str)
    setting(p, "--lut-mode", "sweeps.lut_mode")
    setting(p, "--signed-mode", "sweeps.signed_mode")
    setting(p, "--calibration-images", "sweeps.calibration_images")
    setting(p, "--act-range", "sweeps.act_range")
    settings.hparams_option(p, "JSON settings of wp_train (its training subset is sampled)")
    p.add_argument("--out-npz", required=True)
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-h", required=True)
    settings.job_options(p)


def main(args: argparse.Namespace) -> None:
    models.load_files(args.networks_from)
    run(args.data, args.checkpoint, args.network, args.act_bits, parse_lut(str(args.lut_bits)),
        hparams(settings.json_object(args.hparams, "--hparams")), args.out_npz, args.out_json, args.out_h,
        lut_mode=args.lut_mode, signed_mode=args.signed_mode, calibration_images=args.calibration_images,
        act_range=args.act_range, seed=args.seed, device=args.device)


def run(data_path: str | Path, ckpt_path: str | Path, network: str, act_bits: int, lut_bits: int | None, hp: dict,
        out_npz: str | Path, out_json: str | Path, out_h: str | Path, *, lut_mode: str, signed_mode: str,
        calibration_images: int, act_range: str, seed: int, device: str) -> dict:
    if not 2 <= act_bits <= 16:
        raise WPError(f"activation bits {act_bits} out of range: choose 2..16")
    lo, hi = export.LUT_BITS
    if lut_bits is None or not lo <= lut_bits <= hi:
        raise WPError(f"LUT bits {lut_label(lut_bits)} cannot be exported: the device runs from integer table codes, choose {lo}..{hi}")
    dev = resolve_device(device)
    ds = data.read(data_path)
    ckpt, model = load_pooled(ckpt_path, network, dev)
    check_dataset(ckpt, ds.name, ckpt_path)
    trained_bits = check_trained_bits(ckpt, act_bits, ckpt_path)
    train = selection.images(ds.train, selection.recorded(ckpt, ckpt_path).training_pool(), dev)  # wp_train's, as quant_eval
    seed_everything(seed)
    ranges = act_ranges(ckpt, model, train, calibration_images, seed, bits=act_bits, method=act_range)
    lutnet.convert(model, ckpt["pool"], ckpt["indices"], ranges, act_bits, lut_bits, lut_mode=lut_mode, signed_mode=signed_mode,
                   scales=checkpoint.pool_scale(ckpt)[1])
    arrays, manifest = export.from_lutnet(model, ckpt, act_bits=act_bits, lut_bits=lut_bits, lut_mode=lut_mode,
                                          signed_mode=signed_mode)
    calibration = "checkpoint" if trained_bits is not None else f"{act_range} over {min(calibration_images, len(train))} training images"
    manifest.update({
        "stage": "export", "act_range_method": act_range, "calibration": calibration,
        "source": {"checkpoint": Path(ckpt_path).name, "checkpoint_sha256": sha256(ckpt_path)},
        "provenance": provenance.collect(dev, seed, {"stage": "export", "dataset": ds.name, "network": network,
                                                     "k": int(ckpt["k"]), "act_bits": act_bits, "lut_bits": lut_bits,
                                                     "lut_mode": lut_mode, "signed_mode": signed_mode,
                                                     "act_range": act_range, "hparams": hp})})
    manifest = export.write(arrays, manifest, out_npz, out_json, out_h)
    st = manifest["storage"]
    print(f"export {network} K={ckpt['k']} {act_bits}-bit activations, {lut_bits}-bit table: {len(manifest['layers'])} pooled layers, "
          f"{st['tables']} table(s); storage {st['bytes_int8']:.0f} B at int8 (table 3: {st['table3']['bytes_int8']:.0f} B); "
          f"files {manifest['files']['npz_bytes']} B .npz, {manifest['files']['h_bytes']} B .h", flush=True)
    return manifest
