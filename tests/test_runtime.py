"""The C runtime (wp/runtime_c) against wp's integer emulation of the deployed network (wp.intnet).

1. Host (gcc): for a trained, exported tinyconv and an exported ResNet, the runtime's logits and every
   intermediate integer tensor equal wp.intnet.run's on real digits test images, for each LUT kernel
   variant, unsigned and signed, 8- and 4-bit activations; the int8 baseline network too.
2. wp.intnet itself: its pooled-layer sums are lut_conv2d's, its input quantizer is quant.act_codes (half
   steps included), and it predicts what the float-side deployed network (wp.lutnet) predicts.
3. Cortex-M3 (arm-none-eabi-gcc + unicorn): the emulated runtime computes the same logits, and the
   instruction counts are identical across runs and equal a per-instruction count.
"""

import collections
import shutil

import numpy as np
import pytest
import torch

from wp import WPError, data, export_load, intnet, lutnet, mcu, quant
from wp.train import as_float

from conftest import pooled_model
from test_export import digits_images, pooled_checkpoint, run_export

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler (gcc)")
needs_m3 = pytest.mark.skipif(not mcu.have_emulator(), reason=mcu.TOOLCHAIN_HINT)


def deployed(digits_h5, ckpt, network, tmp_path, act_bits):
    """The deployed network rebuilt from its export artifact, and a program compiled from it."""
    _, stem = run_export(digits_h5, ckpt, network, tmp_path, act_bits=act_bits, lut_bits=8)
    model = export_load.load(f"{stem}.npz", f"{stem}.json")
    calib = as_float(torch.from_numpy(data.read(digits_h5).train.images[:256]))  # ranges of int8-only tensors
    return model, calib


def check_host(program, images, build):
    logits, outs = intnet.run(program, images)
    exe = mcu.build_host(program, build)
    c_logits, c_outs = mcu.run_host(program, exe, images)
    for i, (a, b) in enumerate(zip(outs, c_outs)):
        assert np.array_equal(a, b), f"op {i} ({program.names[i]}) differs"
    assert np.array_equal(logits, c_logits)
    assert (logits.argmax(1) == c_logits.argmax(1)).all()
    return logits


@pytest.fixture(scope="module")
def tiny_wp(pooled_tinyconv):
    return pooled_tinyconv(32) / "wp32.pt"


@needs_gcc
@pytest.mark.parametrize("act_bits", [8, 4])
def test_tinyconv_runtime_equals_integer_emulation(digits_h5, tiny_wp, tmp_path, act_bits):
    model, calib = deployed(digits_h5, tiny_wp, "tinyconv", tmp_path, act_bits)
    assert all(m.signed for m in model.modules() if isinstance(m, lutnet.LUTLayer))  # BN outputs: signed codes
    x = digits_images(digits_h5, 64)
    for variant in ("plain", "cache", "precompute"):
        prog = intnet.compile(model, calib, variant=variant)
        assert sum(op["type"] == intnet.LUTCONV for op in prog.ops) == 2
        logits = check_host(prog, x, tmp_path / f"b_{variant}")
    # the integer network predicts what the float-side deployed network predicts
    with torch.no_grad():
        ref = model(x).argmax(1).numpy()
    assert (logits.argmax(1) == ref).mean() >= 0.9


@needs_gcc
@pytest.mark.parametrize("act_bits", [8, 4])
def test_resnet_runtime_equals_integer_emulation(digits_h5, tmp_path, act_bits):
    ckpt = pooled_checkpoint("resnet_mlperf", digits_h5, tmp_path / "wp64.pt", k=64)
    model, calib = deployed(digits_h5, ckpt, "resnet_mlperf", tmp_path, act_bits)
    assert not any(m.signed for m in model.modules() if isinstance(m, lutnet.LUTLayer))  # post-ReLU: unsigned
    x = digits_images(digits_h5, 32)
    for variant in ("plain", "cache", "precompute", "auto"):
        prog = intnet.compile(model, calib, variant=variant)
        pooled = sum(isinstance(m, lutnet.LUTLayer) for m in model.modules())
        assert sum(op["type"] == intnet.LUTCONV for op in prog.ops) == pooled == 14  # 12 3x3 + 2 downsample
        check_host(prog, x, tmp_path / f"b_{variant}")


@needs_gcc
def test_int8_baseline_network(tmp_path):
    """A float network compiles with every conv int8 (the CMSIS-style baseline) and runs identically in C."""
    torch.manual_seed(0)
    m, _, _ = pooled_model("resnet_mlperf", 0, 16, torch.float32, 12, 3)
    x = torch.rand(8, 3, 12, 12)
    prog = intnet.compile(m, x)
    assert not any(op["type"] == intnet.LUTCONV for op in prog.ops)
    logits = check_host(prog, x, tmp_path / "b")
    with torch.no_grad():
        assert (logits.argmax(1) == m(x).argmax(1).numpy()).mean() >= 0.75


@needs_gcc
def test_input_quantizer_rounds_half_steps_like_python(tmp_path):
    """The runtime's input quantizer equals quant.act_codes (torch.round: ties to even) on exact half steps."""
    m, centers, idx = pooled_model("tinyconv", 1, 16, torch.float32, 12, 1)
    x = torch.rand(6, 1, 12, 12) * 2 - 1
    lutnet.convert(m, centers, idx, quant.calibrated_ranges(m, list(idx), [x], method="max"), 4, 8, lut_mode="strict", signed_mode="twos")
    prog = intnet.compile(m, x)
    spec = prog.tensors[prog.ops[0]["out"]].spec
    halves = (torch.arange(-72, 72, dtype=torch.float32) + 0.5) * spec.step  # every value a tie
    img = torch.stack([halves.reshape(1, 12, 12), -halves.reshape(1, 12, 12)])
    codes, _ = quant.act_codes(img, spec.bits, spec.rng, spec.signed)
    assert (codes % 2 == 0).all()  # ties went to the even neighbour
    exe = mcu.build_host(prog, tmp_path)
    _, c_outs = mcu.run_host(prog, exe, img)
    _, outs = intnet.run(prog, img)
    expect = codes.permute(0, 2, 3, 1).reshape(2, -1).numpy()
    assert np.array_equal(outs[0], expect) and np.array_equal(c_outs[0], expect)


@needs_gcc
def test_mobilenet_runtime_equals_integer_emulation(tmp_path):
    """MobileNet-v2: depthwise int8 convs, signed block outputs (linear bottlenecks), 1x1 shortcuts."""
    m, centers, idx = pooled_model("mobilenet_v2", 0, 16, torch.float32, 12, 1)
    x = torch.rand(4, 1, 12, 12)
    lutnet.convert(m, centers, idx, quant.calibrated_ranges(m, list(idx), [x], method="max"), 5, 8, lut_mode="strict", signed_mode="twos")
    prog = intnet.compile(m, x, variant="auto")
    assert sum(op["type"] == intnet.DWCONV8 for op in prog.ops) == 17
    assert sum(op["type"] == intnet.LUTCONV for op in prog.ops) == len(idx)
    logits = check_host(prog, x, tmp_path)
    with torch.no_grad():
        assert (logits.argmax(1) == m(x).argmax(1).numpy()).mean() >= 0.75


@needs_gcc
@pytest.mark.parametrize("image_size, act_bits", [(20, 8), (12, 4), (4, 8)])
def test_tinyconv_pooled_fc_after_flatten(tmp_path, image_size, act_bits):
    """TinyConv with its classifier pooled (pool_fc): the linear layer reads a 3x3x64 (or 2x2x64) tensor, so a
    z-vector (8 consecutive features of torch's C, H, W flatten) spans spatial positions of one channel and,
    at 3x3, crosses channel boundaries; the runtime's flatten op must order the HWC codes like torch. At 1x1
    there is nothing to reorder and no flatten op."""
    from wp import pool

    m, centers, idx = pooled_model("tinyconv", 4, 32, torch.float32, image_size, 1)
    w, idx["fc1"] = pool.project(m.fc1.weight.data, centers)
    m.fc1.weight.data.copy_(w)
    assert m.fc1.in_features == 64 * ((image_size + 4) // 8) ** 2
    x = torch.rand(8, 1, image_size, image_size)
    with torch.no_grad():
        m.train()(x)  # BN statistics of these images
    m.eval()
    lutnet.convert(m, centers, idx, quant.calibrated_ranges(m, list(idx), [x], method="max"), act_bits, 8, lut_mode="strict", signed_mode="twos")
    assert isinstance(m.fc1, lutnet.LUTLayer) and m.fc1.is_linear
    for variant in ("plain", "cache", "precompute"):
        prog = intnet.compile(m, x, variant=variant)
        assert sum(op["type"] == intnet.LUTCONV for op in prog.ops) == 3
        side = (image_size + 4) // 8
        flat = [n for n, op in zip(prog.names, prog.ops) if op["type"] == intnet.FLATTEN]
        assert flat == (["fc1.flatten"] if side > 1 else [])
        logits, outs = intnet.run(prog, x)
        if side > 1:  # the flatten op's output is torch.flatten of the codes it reads (NCHW), independently computed
            i = prog.names.index("fc1.flatten")
            hwc = torch.from_numpy(outs[i - 1].reshape(8, side, side, 64))
            assert np.array_equal(outs[i], torch.flatten(hwc.permute(0, 3, 1, 2), 1).numpy())
        check_host(prog, x, tmp_path / variant)
    if act_bits == 8:  # a random net's logits lie close together: at 4 bits its top-1 is a coin toss either way
        with torch.no_grad():
            assert (logits.argmax(1) == m(x).argmax(1).numpy()).mean() >= 0.75


def test_unsupported_network_is_one_clear_error():
    with pytest.raises(WPError, match="not Sequential"):
        intnet.compile(torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3)), torch.rand(2, 1, 12, 12))


def test_missing_toolchain_is_one_line(monkeypatch):
    monkeypatch.setattr(mcu.shutil, "which", lambda name: None)
    with pytest.raises(WPError, match="apt-get install gcc-arm-none-eabi") as e:
        mcu.require_emulator()
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------------
# 3. Cortex-M3 in the emulator
# ---------------------------------------------------------------------------------------------------

@needs_m3
def test_m3_runtime_logits_and_exact_counts(tmp_path):
    m, centers, idx = pooled_model("resnet_mlperf", 2, 64, torch.float32, 8, 3)
    x = torch.rand(4, 3, 8, 8)
    lutnet.convert(m, centers, idx, quant.calibrated_ranges(m, list(idx), [x], method="max"), 4, 8, lut_mode="strict", signed_mode="twos")
    prog = intnet.compile(m, x, variant="auto")
    logits, _ = intnet.run(prog, x[:1])
    elf = mcu.build_m3(prog, tmp_path)
    first, second = mcu.run_m3(prog, elf, x[0]), mcu.run_m3(prog, elf, x[0])
    assert np.array_equal(first["logits"], logits[0])
    assert first["instructions"] == second["instructions"] and first["per_op"] == second["per_op"]
    assert len(first["per_op"]) == len(prog.ops) and sum(first["per_op"]) <= first["instructions"]
    lut_ops = [c for c, op in zip(first["per_op"], prog.ops) if op["type"] == intnet.LUTCONV]
    assert all(c > 0 for c in lut_ops)


@needs_m3
def test_block_count_is_every_issued_instruction(tmp_path):
    """The C basic-block counter equals a count of every instruction of every block entered, decoded by
    capstone; it exceeds unicorn's per-instruction hook exactly by instructions of IT blocks whose
    condition failed (issued, not executed: a Cortex-M3 still spends a cycle on them)."""
    import capstone
    from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE

    m, centers, idx = pooled_model("tinyconv", 3, 32, torch.float32, 4, 1)
    x = torch.rand(2, 1, 4, 4)
    lutnet.convert(m, centers, idx, quant.calibrated_ranges(m, list(idx), [x], method="max"), 3, 8, lut_mode="strict", signed_mode="twos")
    prog = intnet.compile(m, x, variant="precompute")
    emu = mcu.Emulator(mcu.build_m3(prog, tmp_path))
    blocks, executed = collections.Counter(), collections.Counter()
    emu.uc.hook_add(UC_HOOK_BLOCK, lambda uc, a, s, u: blocks.update([(a, s)]))
    emu.uc.hook_add(UC_HOOK_CODE, lambda uc, a, s, u: executed.update([a]))
    res = emu.run(x[0].permute(1, 2, 0).numpy())
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    issued, in_it = collections.Counter(), set()
    code = bytes(emu._image)
    for (a, s), n in blocks.items():
        pending = 0
        for ins in md.disasm(code[a:a + s], a):
            issued[ins.address] += n
            if pending:
                in_it.add(ins.address)
                pending -= 1
            if ins.mnemonic.startswith("it"):
                pending = len(ins.mnemonic) - 1
    assert res["instructions"] == sum(issued.values()) > 100000
    skipped = {a for a in issued if issued[a] != executed[a]}
    assert skipped and skipped <= in_it


@pytest.mark.skipif(not mcu.have_qemu(), reason="no qemu-system-arm (apt-get install qemu-system-arm) or no M3 toolchain")
def test_qemu_icount_equals_unicorn_count(tmp_path):
    """QEMU's mps2-an385 (Cortex-M3, -icount shift=0, one logged instruction per block) counts, for one pooled
    3x3 layer run on a zero image, exactly the instructions per op and in all that unicorn's block counter does."""
    m, centers, idx = pooled_model("resnet_mlperf", 2, 16, torch.float32, 8, 3)
    lutnet.convert(m, centers, idx, quant.calibrated_ranges(m, list(idx), [torch.rand(2, 3, 8, 8)], method="max"), 4, 8, lut_mode="strict", signed_mode="twos")
    layer = m.get_submodule("layer1.0.conv2")
    assert isinstance(layer, lutnet.LUTLayer)
    prog = intnet.compile_layer(layer, torch.rand(2, 16, 4, 4), variant="cache")
    uni = mcu.Emulator(mcu.build_m3(prog, tmp_path / "uc")).run(None)  # wp_image is zero in both
    q = mcu.run_qemu(mcu.build_qemu(prog, tmp_path / "q"))
    assert uni["per_op"][1] > 50000  # the LUT conv
    assert q["per_op"] == uni["per_op"] and q["instructions"] == uni["instructions"]


# ---------------------------------------------------------------------------------------------------
# 4. Table 7 and figures 7 / 8 (library at tiny sizes; the rules wired in the workflow)
# ---------------------------------------------------------------------------------------------------

@needs_m3
def test_table7_rows_and_speedups(tmp_path):
    from wp import mcu_bench

    df = mcu_bench.table7(["resnet_mlperf"], {"resnet_mlperf": 4}, tmp_path, pools=(64, 32), input_shape=(3, 8),
                          log=lambda *_: None)
    assert list(df["column"]) == ["int8", "64-8", "32-8", "64-m", "32-m"]
    d = df.set_index("column")
    assert d.loc["int8", "speedup"] == 1.0
    assert np.isclose(d.loc["64-m", "speedup"], d.loc["int8", "instructions_conv"] / d.loc["64-m", "instructions_conv"])
    assert d.loc["64-m", "instructions_conv"] < d.loc["64-8", "instructions_conv"]  # fewer bit planes, fewer lookups
    assert d.loc["64-8", "paper_speedup_f207"] == pytest.approx(0.60 / 0.49)
    assert d.loc["int8", "fits_f207"] and (d["instructions_total"] > d["instructions_conv"]).all()


@needs_m3
def test_figures_7_and_8_library(tmp_path):
    from wp import mcu_bench

    f7 = mcu_bench.figure7([8, 16], tmp_path / "f7", size=4, k=16, log=lambda *_: None)
    assert sorted(f7["variant"].unique()) == ["cache", "precompute"] and len(f7) == 4
    f8 = mcu_bench.figure8(16, [8, 4, 1], tmp_path / "f8", size=4, k=16, log=lambda *_: None)
    for v in ("cache", "precompute"):
        s = f8[f8["variant"] == v].set_index("act_bits")["speedup_vs_8bit"]
        assert s[8] == 1.0 and s[1] > s[4] > 1.0  # fewer bits, fewer lookups
    with pytest.raises(WPError, match="8 bits"):
        mcu_bench.figure8(16, [4], tmp_path / "x", size=4, k=16, log=lambda *_: None)


@pytest.mark.slow
@needs_m3
def test_snakemake_mcu_rules(tmp_path):
    from conftest import copy_workflow, planned, snakemake

    from test_export import WF_CONFIG

    work = copy_workflow(tmp_path)
    assert not {"mcu_table7", "mcu_figure7", "mcu_figure8"} & set(planned(work, WF_CONFIG))  # not in the default target
    cfg = {**WF_CONFIG, "mcu": {"figure7_filters": [8], "figure8_channels": 8, "figure8_bits": [8, 2], "layer_size": 4,
                                "layer_k": 16}}
    assert set(planned(work, cfg, "all_mcu")) >= {"mcu_table7", "mcu_figure7", "mcu_figure8"}
    r = snakemake(work, "tables/figure7.csv", "tables/figure8.csv", config=cfg)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (work / "tables" / "plots" / "figure7.png").stat().st_size > 0
    assert (work / "tables" / "plots" / "figure8.png").stat().st_size > 0


def test_stages_stop_with_one_line_without_toolchain(monkeypatch, tmp_path, capsys):
    from wp import cli

    monkeypatch.setattr(mcu.shutil, "which", lambda name: None)
    rc = cli.main(["mcu_figure7", "--filters", "8", "--build", str(tmp_path), "--out", str(tmp_path / "f.csv"),
                   "--png", str(tmp_path / "f.png")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "gcc-arm-none-eabi" in err
    assert not (tmp_path / "f.csv").exists()


def test_min_bits_sources(tmp_path):
    from wp import mcu_bench as stage

    assert stage.min_bits("paper", ["resnet_10", "tinyconv"]) == {"resnet_10": 4, "tinyconv": 4}
    csv = tmp_path / "table6.csv"
    csv.write_text("dataset,network,min_bits\ndigits,tinyconv,5\nfashion_mnist,tinyconv,3\ndigits,resnet_10,\n")
    assert stage.min_bits("table6", ["tinyconv"], csv) == {"tinyconv": 5}
    with pytest.raises(WPError, match="resnet_10"):
        stage.min_bits("table6", ["resnet_10"], csv)
