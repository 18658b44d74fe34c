"""Building and running the C runtime (``wp/runtime_c``): on the host (gcc), and as a Cortex-M3 image
(``arm-none-eabi-gcc -mcpu=cortex-m3 -mthumb -O2``) in the ``unicorn`` emulator, counting the
instructions executed exactly.

Counting: a basic-block hook written in C (``uc_count.c``, built with the host gcc against the unicorn
wheel's library) adds the number of Thumb instructions of every block the emulator enters; no Python
runs per block. The count at each ``wp_mark`` call (after every op) gives per-op counts. Instructions in
an IT block whose condition fails are counted (a Cortex-M3 issues them). The emulator has no timing:
flash wait states, the pipeline and bus contention are not modelled, so instruction counts, not cycles,
are what is measured; :func:`cycle_estimate` is a labelled estimate beside them.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

from wp import WPError, intnet

CODE_DATA = ("runtime_c",)  # the C sources every build compiles: code inputs of the mcu rules (wp.codedeps)
SRC = Path(__file__).resolve().parent / CODE_DATA[0]
M3_FLAGS = ["-mcpu=cortex-m3", "-mthumb", "-O2", "-std=c99", "-ffunction-sections", "-fdata-sections"]
HOST_FLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror"]
TOOLCHAIN_HINT = ("install the Cortex-M toolchain and the emulator: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                  "and pip install unicorn (the 'test' extras of pyproject.toml)")
RAM_BASE = 0x20000000
RAM_SIZE = 16 << 20


def cross_compiler() -> str | None:
    return shutil.which("arm-none-eabi-gcc")


def have_emulator() -> bool:
    try:
        import unicorn  # noqa: F401
    except ImportError:
        return False
    return cross_compiler() is not None and shutil.which("gcc") is not None


def require_emulator() -> None:
    """One line saying what to install, when the cross-compiler or the emulator is missing."""
    if not have_emulator():
        raise WPError(f"no Cortex-M3 toolchain/emulator here: {TOOLCHAIN_HINT}")


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise WPError(f"{what} failed: {' '.join(cmd[:3])} ...: {r.stderr.strip()[-2000:]}")


def _write_header(program: intnet.Program, build: Path) -> Path:
    build.mkdir(parents=True, exist_ok=True)
    h = (build / "net.h").resolve()
    h.write_text(intnet.c_header(program))
    return h


def _max_defines(program: intnet.Program) -> list[str]:
    f = max([op["out_c"] for op in program.ops if op["type"] == intnet.LUTCONV] + [8])
    k = max([op["k"] for op in program.ops if op["type"] == intnet.LUTCONV] + [32])
    out = [f"-DWP_MAX_FILTERS={f}", f"-DWP_MAX_K={k}"]
    if program.lut_dtype == "int16":
        out.append("-DWP_LUT16")
    return out


# ----------------------------------------------------------------------------------------------------
# Host
# ----------------------------------------------------------------------------------------------------

def build_host(program: intnet.Program, build: str | Path) -> Path:
    """Compile the runtime and ``program`` for the host: the executable's path."""
    if shutil.which("gcc") is None:
        raise WPError("no host C compiler: install gcc")
    build = Path(build)
    h = _write_header(program, build)
    exe = build / "host_net"
    _run(["gcc", *HOST_FLAGS, *_max_defines(program), f"-I{SRC}", f'-DWP_NET_HEADER="{h}"', str(SRC / "wp_rt.c"),
          str(SRC / "host_main.c"), "-lm", "-o", str(exe)], "host build")
    return exe


def run_host(program: intnet.Program, exe: str | Path, images) -> tuple[np.ndarray, list[np.ndarray]]:
    """The C runtime's logits ``[N, classes]`` and every op's output ``[N, elements]`` (int64), as
    :func:`wp.intnet.run` returns them."""
    x = np.ascontiguousarray(images.float().permute(0, 2, 3, 1).numpy().astype(np.float32))
    exe = Path(exe)
    fi, fo = exe.parent / "images.f32", exe.parent / "outputs.i32"
    x.tofile(fi)
    _run([str(exe), str(fi), str(len(x)), str(fo)], "the host runtime")
    flat = np.fromfile(fo, dtype=np.int32).astype(np.int64)
    sizes = [op["out_h"] * op["out_w"] * op["out_c"] for op in program.ops]
    per = flat.reshape(len(x), sum(sizes))
    outs, pos = [], 0
    for s in sizes:
        outs.append(per[:, pos:pos + s])
        pos += s
    out_op = max(i for i, op in enumerate(program.ops) if op["out"] == program.output)
    return outs[out_op], outs


# ----------------------------------------------------------------------------------------------------
# Cortex-M3 image and emulator
# ----------------------------------------------------------------------------------------------------

def build_m3(program: intnet.Program, build: str | Path) -> Path:
    """Cross-compile the runtime and ``program`` into an ELF for the emulator."""
    require_emulator()
    build = Path(build)
    h = _write_header(program, build)
    elf = build / "net_m3.elf"
    _run([cross_compiler(), *M3_FLAGS, *_max_defines(program), f"-I{SRC}", f'-DWP_NET_HEADER="{h}"',
          str(SRC / "wp_rt.c"), str(SRC / "m3_main.c"), "-nostartfiles", "--specs=nano.specs", f"-T{SRC / 'm3.ld'}",
          "-Wl,--gc-sections", "-Wl,-u,wp_halt", "-Wl,-u,wp_output_off", "-Wl,-u,wp_arena", "-lm", "-o", str(elf)], "Cortex-M3 build")
    return elf


def section_sizes(elf: str | Path) -> dict[str, int]:
    """``text`` (code + constants, in flash), ``data``, ``bss`` bytes of an image (arm-none-eabi-size)."""
    size = shutil.which("arm-none-eabi-size")
    r = subprocess.run([size, str(elf)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in r.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def _counter_lib() -> ctypes.CDLL:
    import unicorn
    inc = Path(unicorn.__file__).parent / "include"
    src = SRC / "uc_count.c"
    tag = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    out = Path(os.environ.get("WP_BUILD_DIR", Path.home() / ".cache" / "wp")) / f"uc_count_{tag}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        _run(["gcc", "-O2", "-shared", "-fPIC", f"-I{inc}", str(src), "-o", str(tmp)], "the emulator's counter")
        tmp.replace(out)
    lib = ctypes.CDLL(str(out))
    lib.wp_counter_value.restype = ctypes.c_uint64
    lib.wp_counter_flash_reads.restype = ctypes.c_uint64
    lib.wp_counter_set_code.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
    return lib


def _elf_segments(elf: bytes) -> list[tuple[int, bytes, int]]:
    """(address, file bytes, memory size) of every PT_LOAD segment of a 32-bit little-endian ELF."""
    if elf[:4] != b"\x7fELF" or elf[4] != 1:
        raise WPError("not a 32-bit ELF image")
    phoff, = struct.unpack_from("<I", elf, 28)
    phentsize, phnum = struct.unpack_from("<HH", elf, 42)
    segs = []
    for i in range(phnum):
        p_type, p_offset, p_vaddr, _, p_filesz, p_memsz = struct.unpack_from("<IIIIII", elf, phoff + i * phentsize)
        if p_type == 1 and p_memsz:
            segs.append((p_vaddr, elf[p_offset:p_offset + p_filesz], p_memsz))
    return segs


def symbols(elf: str | Path) -> dict[str, int]:
    nm = shutil.which("arm-none-eabi-nm")
    r = subprocess.run([nm, str(elf)], capture_output=True, text=True, check=True)
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[parts[2]] = int(parts[0], 16)
    return out


class Emulator:
    """A Cortex-M3 image loaded into unicorn, ready to run ``wp_entry`` on images. The counter library holds
    one code image: use one emulator at a time per process (the latest one created counts correctly)."""

    def __init__(self, elf: str | Path):
        from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_MODE_MCLASS, UC_MODE_THUMB, Uc
        from unicorn import arm_const
        from unicorn.unicorn_py3.arch.types import uc_hook_h
        from unicorn.unicorn_py3.unicorn import uclib

        self.elf = Path(elf)
        self.sym = symbols(elf)
        uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(arm_const.UC_CPU_ARM_CORTEX_M3)
        raw = self.elf.read_bytes()
        segs = _elf_segments(raw)
        flash_end = max(a + m for a, _, m in segs if a < RAM_BASE)
        flash_size = (flash_end + 0xFFFF) & ~0xFFFF
        uc.mem_map(0, flash_size)
        uc.mem_map(RAM_BASE, RAM_SIZE)
        image = bytearray(flash_size)
        for addr, data, _ in segs:
            uc.mem_write(addr, data)
            if addr < RAM_BASE:
                image[addr:addr + len(data)] = data
        self._code = (ctypes.c_uint8 * flash_size).from_buffer(image)
        self._image = image
        self.lib = _counter_lib()
        self.lib.wp_counter_set_code(ctypes.addressof(self._code), 0, flash_size)
        handle = uc_hook_h()
        fptr = ctypes.cast(self.lib.wp_counter_block, ctypes.c_void_p)
        status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK, fptr, ctypes.c_void_p(0),
                                   ctypes.c_uint64(1), ctypes.c_uint64(0))
        if status != 0:
            raise WPError(f"unicorn refused the counting hook (error {status})")
        handle2 = uc_hook_h()
        fptr2 = ctypes.cast(self.lib.wp_counter_read, ctypes.c_void_p)
        status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle2), UC_HOOK_MEM_READ, fptr2, ctypes.c_void_p(0),
                                   ctypes.c_uint64(0), ctypes.c_uint64(flash_size - 1))
        if status != 0:
            raise WPError(f"unicorn refused the flash-read hook (error {status})")
        self.marks: list[int] = []
        mark = self.sym["wp_mark"] & ~1
        uc.hook_add(UC_HOOK_CODE, lambda *_: self.marks.append((self.lib.wp_counter_value(), self.lib.wp_counter_flash_reads())),
                    begin=mark, end=mark)
        self.uc, self.arm = uc, arm_const

    def run(self, image: np.ndarray | None = None, entry: str = "wp_entry") -> dict:
        """Run ``entry`` once (the float HWC ``image`` written to ``wp_image`` first). Returns
        ``{"instructions": total, "per_op": [...], "logits": int32 array or None}``."""
        uc, arm = self.uc, self.arm
        if image is not None:
            uc.mem_write(self.sym["wp_image"], np.ascontiguousarray(image, dtype=np.float32).tobytes())
        self.marks = []
        start, start_reads = self.lib.wp_counter_value(), self.lib.wp_counter_flash_reads()
        uc.reg_write(arm.UC_ARM_REG_SP, RAM_BASE + RAM_SIZE - 16)
        halt = self.sym["wp_halt"] & ~1
        uc.reg_write(arm.UC_ARM_REG_LR, halt | 1)
        uc.emu_start(self.sym[entry] | 1, halt)
        total = self.lib.wp_counter_value() - start
        marks = [m - start for m, _ in self.marks]
        reads = [r - start_reads for _, r in self.marks]
        per_op = [b - a for a, b in zip([0] + marks[:-1], marks)]
        per_op_reads = [b - a for a, b in zip([0] + reads[:-1], reads)]
        logits = None
        if "wp_output_off" in self.sym:
            off = struct.unpack("<i", uc.mem_read(self.sym["wp_output_off"], 4))[0]
            arena = struct.unpack("<I", uc.mem_read(self.sym["wp_arena"], 4))[0]
            self.last_arena = arena
            self.output_off = off
        return {"instructions": total, "per_op": per_op, "flash_reads": self.lib.wp_counter_flash_reads() - start_reads,
                "per_op_flash_reads": per_op_reads, "logits": logits}

    def read_int32(self, addr: int, n: int) -> np.ndarray:
        return np.frombuffer(bytes(self.uc.mem_read(addr, 4 * n)), dtype=np.int32).copy()


def run_m3(program: intnet.Program, elf: str | Path, image) -> dict:
    """Run one image (``[C, H, W]`` float tensor) through the Cortex-M3 image: total and per-op
    instruction counts and the logits the emulated runtime computed."""
    emu = Emulator(elf)
    x = image.float().permute(1, 2, 0).numpy()
    res = emu.run(x)
    n_out = int(np.prod(program.tensors[program.output].shape))
    res["logits"] = emu.read_int32(emu.last_arena + emu.output_off, n_out)
    return res


def cycle_estimate(instructions: int, flash_reads: int, cpi: float, wait_states: int) -> float:
    """An estimate of Cortex-M3 cycles (labelled as one wherever shown): ``cpi`` cycles per instruction
    plus ``wait_states`` per data load from flash (the F207 runs its flash at 3 wait states at 120 MHz;
    its ART accelerator hides most instruction fetches but few random table or weight reads)."""
    return instructions * cpi + flash_reads * wait_states


# ----------------------------------------------------------------------------------------------------
# QEMU cross-check of the counts
# ----------------------------------------------------------------------------------------------------

def have_qemu() -> bool:
    return shutil.which("qemu-system-arm") is not None and have_emulator()


def build_qemu(program: intnet.Program, build: str | Path) -> Path:
    """The runtime and ``program`` as an image for QEMU's ``mps2-an385`` board (vector table + reset that runs
    ``wp_entry`` on a zero image and exits through semihosting)."""
    require_emulator()
    build = Path(build)
    h = _write_header(program, build)
    elf = build / "net_qemu.elf"
    _run([cross_compiler(), *M3_FLAGS, *_max_defines(program), f"-I{SRC}", f'-DWP_NET_HEADER="{h}"',
          str(SRC / "wp_rt.c"), str(SRC / "m3_main.c"), str(SRC / "qemu_start.c"), "-nostartfiles", "--specs=nano.specs",
          f"-T{SRC / 'qemu.ld'}", "-Wl,--gc-sections", "-lm", "-o", str(elf)], "QEMU image build")
    return elf


def run_qemu(elf: str | Path, timeout: float = 300) -> dict:
    """Per-op instruction counts of a :func:`build_qemu` image, from QEMU (``-icount shift=0`` for a
    deterministic run, one instruction per translation block, every block execution logged without chaining):
    the instructions from ``wp_entry`` to each ``wp_mark``, as :meth:`Emulator.run` counts them. A block the
    icount budget interrupted at its start is logged twice; those repeats (the same PC twice in a row: no
    instruction of the runtime branches to itself) are dropped. ``{"instructions", "per_op"}``."""
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise WPError("no qemu-system-arm: apt-get install qemu-system-arm")
    elf = Path(elf)
    log = elf.with_suffix(".exec.log")
    r = subprocess.run([qemu, "-M", "mps2-an385", "-nographic", "-monitor", "none", "-serial", "none", "-semihosting",
                        "-icount", "shift=0", "-singlestep", "-d", "exec,nochain", "-D", str(log), "-kernel", str(elf)],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise WPError(f"qemu-system-arm failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    pcs: list[int] = []
    with open(log) as f:
        for line in f:
            if line.startswith("Trace"):
                pc = int(line.split("[", 1)[1].split("/", 2)[1], 16)
                if not pcs or pcs[-1] != pc:
                    pcs.append(pc)
    log.unlink()
    sym = symbols(elf)
    entry, mark = sym["wp_entry"] & ~1, sym["wp_mark"] & ~1
    start = pcs.index(entry)
    marks = [i - start + 1 for i, pc in enumerate(pcs) if i > start and pc == mark]
    ret = pcs[start - 1] + 4  # after the reset handler's 32-bit bl to wp_entry
    back = next(i for i in range(start, len(pcs)) if pcs[i] == ret)
    return {"instructions": back - start, "per_op": [b - a for a, b in zip([0] + marks[:-1], marks)]}
