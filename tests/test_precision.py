"""pretrain.mixed_precision=auto: bf16 only where the hardware computes in it (emulated bf16 is slower than fp32)."""
import pytest

from ssl_pipeline.config import load_config
from ssl_pipeline.errors import UserError
from ssl_pipeline.precision import cpu_flags, resolve

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
