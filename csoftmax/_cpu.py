"""What this CPU is, from /proc/cpuinfo (Linux): vendor, CPUID family and
model, and AMD's Zen generation.  The planner (_plan.pxi: the AMD FUSED
rule) and the bench's CPU name (_bench.cpu_model) read it; elsewhere the
fields are empty and nothing depends on them."""

# AMD's Zen generation by CPUID family and model, as Linux names them
# (arch/x86/kernel/cpu/amd.c): a VM may report only "AMD EPYC".
_AMD_ZEN = (
    (0x17, range(0x00, 0x30), 1), (0x17, range(0x50, 0x60), 1),
    (0x17, range(0x30, 0x50), 2), (0x17, range(0x60, 0x80), 2),
    (0x17, range(0x90, 0x92), 2), (0x17, range(0xa0, 0xb0), 2),
    (0x19, range(0x00, 0x10), 3), (0x19, range(0x20, 0x60), 3),
    (0x19, range(0x10, 0x20), 4), (0x19, range(0x60, 0xb0), 4),
    (0x1a, range(0x00, 0x30), 5), (0x1a, range(0x40, 0x50), 5),
    (0x1a, range(0x60, 0x80), 5),
    (0x1a, range(0x50, 0x60), 6), (0x1a, range(0x80, 0xb0), 6),
    (0x1a, range(0xc0, 0xd0), 6),
)


def cpuinfo_fields(text=None):
    """The first processor's "model name", "vendor_id", "cpu family" and
    "model" of a /proc/cpuinfo text (default: this machine's, read only up
    to the end of its first processor -- the planner asks at import; {}
    where it cannot be read)."""
    if text is not None:
        return _first_block(text.splitlines())
    try:
        with open("/proc/cpuinfo") as f:
            return _first_block(f)
    except OSError:
        return {}


def _first_block(lines):
    out = {}
    for line in lines:
        if not line.strip():
            if out:
                break
            continue
        k, _, v = line.partition(":")
        k = k.strip().lower()
        if k in ("model name", "vendor_id", "cpu family", "model"):
            out.setdefault(k, v.strip())
    return out


def amd_zen(fields):
    """AMD's Zen generation (1, 2, ...) of cpuinfo_fields(), or None (not
    AMD, an older or unknown family/model)."""
    if fields.get("vendor_id") != "AuthenticAMD":
        return None
    try:
        fam, mod = int(fields.get("cpu family", "")), int(fields.get("model", ""))
    except ValueError:
        return None
    for fa, models, zen in _AMD_ZEN:
        if fam == fa and mod in models:
            return zen
    return None
