"""pretrain.mixed_precision=auto: bf16 only where the hardware computes in it (emulated bf16 is slower than fp32)."""
import pytest

from ssl_pipeline.config import PROJECT_ROOT, load_config
from ssl_pipeline.errors import UserError
from ssl_pipeline.precision import cpu_flags, emulation_warning, native_bf16, resolve

X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 {extra}\nbugs\t\t: none\n"
ARM = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve {extra}\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize("text, extra, expected", [
    (X86, "avx512f avx512_bf16", "bf16"),       # AVX-512 BF16 (Zen 4, Cooper Lake)
    (X86, "avx512f amx_tile amx_bf16", "bf16"),  # AMX (Sapphire Rapids)
    (X86, "avx512f avx512bw", "no"),             # AVX-512 without BF16: oneDNN would emulate it
    (X86, "", "no"),                             # AVX2 only
    (ARM, "bf16 i8mm", "bf16"),                  # Arm's BF16 extension (Graviton3)
    (ARM, "", "no"),
])
def test_auto_takes_bf16_only_where_the_cpu_computes_in_it(tmp_path, text, extra, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(text.format(extra=extra))
    value, why = resolve("auto", cuda=False, flags=cpu_flags(info))
    assert value == expected and why.startswith("auto: the CPU")


def test_explicit_values_pass_through_and_no_cpuinfo_means_no_bf16(tmp_path):
    assert resolve(None) == (None, "")  # left to `accelerate launch`
    assert resolve("bf16") == ("bf16", "") and resolve("no") == ("no", "")
    assert cpu_flags(tmp_path / "missing") == set()
    assert resolve("auto", cuda=False, flags=set())[0] == "no"


def test_auto_is_a_config_value_and_a_bad_one_names_the_key():
    assert load_config(None, ["pretrain.mixed_precision=auto"]).pretrain.mixed_precision == "auto"
    with pytest.raises(UserError, match="pretrain.mixed_precision"):
        load_config(None, ["pretrain.mixed_precision=fastest"])


def test_the_accelerator_runs_in_what_auto_resolves_to():
    """In a fresh process: Accelerate's state is process-wide, and other tests' accelerators run in fp32."""
    import subprocess
    import sys

    code = ("from ssl_pipeline.config import load_config; from ssl_pipeline.engine import make_accelerator; "
            "a = make_accelerator(load_config(None, ['pretrain.mixed_precision=auto', 'threads=1'])); "
            "print('RESULT', a.mixed_precision)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    expected, why = resolve("auto")
    assert f"RESULT {expected}" in out and f"mixed precision: {expected} ({why})" in out


@pytest.mark.parametrize("precision, device, extra, warns", [
    ("bf16", "cpu", "", True),                       # AVX2 only (this suite's CI machine): emulated
    ("bf16", "cpu", "avx512f avx512bw", True),       # AVX-512 without BF16: emulated too
    ("bf16", "cpu", "avx512f avx512_bf16", False),   # native
    ("bf16", "cuda", "", False),                     # the GPU decides, not the host CPU's flags
    ("no", "cpu", "", False),
    ("fp16", "cpu", "", False),
])
def test_bf16_on_a_cpu_that_would_emulate_it_is_kept_but_warned_about(tmp_path, precision, device, extra, warns):
    info = tmp_path / "cpuinfo"
    info.write_text(X86.format(extra=extra))
    line = emulation_warning(precision, device, cpu_flags(info))
    assert bool(line) == warns
    if warns:
        assert line.startswith("warning: mixed precision bf16") and "pretrain.mixed_precision=auto" in line


def test_no_shipped_recipe_asks_for_bf16_outright():
    """The Fashion-MNIST recipes said `bf16`: on a 2-core AVX2 CPU a step took 17 s instead of fp32's 1.5 s, so the
    25-minute pretraining would have taken a day. `auto` keeps bf16 where the hardware computes in it."""
    paths = sorted(p for d in ("vision", "text") for p in (PROJECT_ROOT / "configs" / d).glob("*.yaml"))
    assert len(paths) >= 15
    asked = [p.name for p in paths if load_config(p, []).pretrain.mixed_precision == "bf16"]
    assert asked == []


def test_the_accelerator_keeps_an_explicit_bf16_and_warns_only_where_the_cpu_emulates_it():
    import subprocess
    import sys

    code = ("from ssl_pipeline.config import load_config; from ssl_pipeline.engine import make_accelerator; "
            "a = make_accelerator(load_config(None, ['pretrain.mixed_precision=bf16', 'threads=1'])); "
            "print('RESULT', a.mixed_precision)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "RESULT bf16" in out
    assert ("warning: mixed precision bf16 on a CPU without bf16 instructions" in out) == (native_bf16() is None)
