"""dumps(): the text nlohmann::json::dump() prints, from Python, so that the Python client's
JSON lines equal `lattice run --json` / `lattice generate --json` lines as strings.

Keys come out sorted and without spaces, as json.dumps(sort_keys=True, separators=(",", ":"))
would print them. Floats differ: nlohmann prints a double with Grisu2, which on about 2% of
logprob-like values picks other digits than Python's repr (a different one of two equally
short strings, or a longer one), though both parse back to the same double. So floats go
through a port of nlohmann's dtoa (include/nlohmann/detail/conversions/to_chars.hpp, 3.11).
"""

import json
import math
import struct

_MASK64 = (1 << 64) - 1

# nlohmann's kCachedPowers: (f, e, k) with f * 2^e ~= 10^k.
_CACHED_POWERS = [
    (0xAB70FE17C79AC6CA, -1060, -300), (0xFF77B1FCBEBCDC4F, -1034, -292), (0xBE5691EF416BD60C, -1007, -284),
    (0x8DD01FAD907FFC3C, -980, -276), (0xD3515C2831559A83, -954, -268), (0x9D71AC8FADA6C9B5, -927, -260),
    (0xEA9C227723EE8BCB, -901, -252), (0xAECC49914078536D, -874, -244), (0x823C12795DB6CE57, -847, -236),
    (0xC21094364DFB5637, -821, -228), (0x9096EA6F3848984F, -794, -220), (0xD77485CB25823AC7, -768, -212),
    (0xA086CFCD97BF97F4, -741, -204), (0xEF340A98172AACE5, -715, -196), (0xB23867FB2A35B28E, -688, -188),
    (0x84C8D4DFD2C63F3B, -661, -180), (0xC5DD44271AD3CDBA, -635, -172), (0x936B9FCEBB25C996, -608, -164),
    (0xDBAC6C247D62A584, -582, -156), (0xA3AB66580D5FDAF6, -555, -148), (0xF3E2F893DEC3F126, -529, -140),
    (0xB5B5ADA8AAFF80B8, -502, -132), (0x87625F056C7C4A8B, -475, -124), (0xC9BCFF6034C13053, -449, -116),
    (0x964E858C91BA2655, -422, -108), (0xDFF9772470297EBD, -396, -100), (0xA6DFBD9FB8E5B88F, -369, -92),
    (0xF8A95FCF88747D94, -343, -84), (0xB94470938FA89BCF, -316, -76), (0x8A08F0F8BF0F156B, -289, -68),
    (0xCDB02555653131B6, -263, -60), (0x993FE2C6D07B7FAC, -236, -52), (0xE45C10C42A2B3B06, -210, -44),
    (0xAA242499697392D3, -183, -36), (0xFD87B5F28300CA0E, -157, -28), (0xBCE5086492111AEB, -130, -20),
    (0x8CBCCC096F5088CC, -103, -12), (0xD1B71758E219652C, -77, -4), (0x9C40000000000000, -50, 4),
    (0xE8D4A51000000000, -24, 12), (0xAD78EBC5AC620000, 3, 20), (0x813F3978F8940984, 30, 28),
    (0xC097CE7BC90715B3, 56, 36), (0x8F7E32CE7BEA5C70, 83, 44), (0xD5D238A4ABE98068, 109, 52),
    (0x9F4F2726179A2245, 136, 60), (0xED63A231D4C4FB27, 162, 68), (0xB0DE65388CC8ADA8, 189, 76),
    (0x83C7088E1AAB65DB, 216, 84), (0xC45D1DF942711D9A, 242, 92), (0x924D692CA61BE758, 269, 100),
    (0xDA01EE641A708DEA, 295, 108), (0xA26DA3999AEF774A, 322, 116), (0xF209787BB47D6B85, 348, 124),
    (0xB454E4A179DD1877, 375, 132), (0x865B86925B9BC5C2, 402, 140), (0xC83553C5C8965D3D, 428, 148),
    (0x952AB45CFA97A0B3, 455, 156), (0xDE469FBD99A05FE3, 481, 164), (0xA59BC234DB398C25, 508, 172),
    (0xF6C69A72A3989F5C, 534, 180), (0xB7DCBF5354E9BECE, 561, 188), (0x88FCF317F22241E2, 588, 196),
    (0xCC20CE9BD35C78A5, 614, 204), (0x98165AF37B2153DF, 641, 212), (0xE2A0B5DC971F303A, 667, 220),
    (0xA8D9D1535CE3B396, 694, 228), (0xFB9B7CD9A4A7443C, 720, 236), (0xBB764C4CA7A44410, 747, 244),
    (0x8BAB8EEFB6409C1A, 774, 252), (0xD01FEF10A657842C, 800, 260), (0x9B10A4E5E9913129, 827, 268),
    (0xE7109BFBA19C0C9D, 853, 276), (0xAC2820D9623BF429, 880, 284), (0x80444B5E7AA7CF85, 907, 292),
    (0xBF21E44003ACDD2D, 933, 300), (0x8E679C2F5E44FF8F, 960, 308), (0xD433179D9C8CB841, 986, 316),
    (0x9E19DB92B4E31BA9, 1013, 324),
]
_ALPHA = -60


def _mul(xf, xe, yf, ye):
    # 64x64 -> upper 64 bits, rounded (ties up), as diyfp::mul.
    return (xf * yf + (1 << 63)) >> 64, xe + ye + 64


def _normalize(f, e):
    shift = 64 - f.bit_length()
    return f << shift, e - shift


def _grisu2(value):
    """Digits and decimal exponent of a positive finite double: value ~= digits * 10^exp."""
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    biased, fraction = bits >> 52, bits & ((1 << 52) - 1)
    if biased == 0:
        vf, ve = fraction, 1 - 1075
    else:
        vf, ve = fraction + (1 << 52), biased - 1075
    plus_f, plus_e = _normalize(2 * vf + 1, ve - 1)
    if fraction == 0 and biased > 1:
        minus_f, minus_e = 4 * vf - 1, ve - 2
    else:
        minus_f, minus_e = 2 * vf - 1, ve - 1
    minus_f <<= minus_e - plus_e
    w_f, w_e = _normalize(vf, ve)

    f = _ALPHA - plus_e - 1
    k = (f * 78913) // (1 << 18) if f * 78913 >= 0 else -((-f * 78913) // (1 << 18))  # C++ truncation
    k += 1 if f > 0 else 0
    cached_f, cached_e, cached_k = _CACHED_POWERS[(300 + k + 7) // 8]
    w_f, _ = _mul(w_f, w_e, cached_f, cached_e)
    lo_f, _ = _mul(minus_f, plus_e, cached_f, cached_e)
    hi_f, e = _mul(plus_f, plus_e, cached_f, cached_e)
    lo_f += 1
    hi_f -= 1
    decimal_exponent = -cached_k

    # grisu2_digit_gen
    delta = hi_f - lo_f
    dist = hi_f - w_f
    one_e = -e
    one_f = 1 << one_e
    p1 = hi_f >> one_e
    p2 = hi_f & (one_f - 1)
    digits = []
    n = len(str(p1))
    pow10 = 10 ** (n - 1)
    while n > 0:
        d, p1 = divmod(p1, pow10)
        digits.append(d)
        n -= 1
        rest = (p1 << one_e) + p2
        if rest <= delta:
            decimal_exponent += n
            _round(digits, dist, delta, rest, pow10 << one_e)
            return digits, decimal_exponent
        pow10 //= 10
    m = 0
    while True:
        p2 = (p2 * 10) & _MASK64
        digits.append(p2 >> one_e)
        p2 &= one_f - 1
        m += 1
        delta = (delta * 10) & _MASK64
        dist = (dist * 10) & _MASK64
        if p2 <= delta:
            break
    decimal_exponent -= m
    _round(digits, dist, delta, p2, one_f)
    return digits, decimal_exponent


def _round(digits, dist, delta, rest, ten_k):
    while rest < dist and delta - rest >= ten_k and (rest + ten_k < dist or dist - rest > rest + ten_k - dist):
        digits[-1] -= 1
        rest += ten_k


def _format(digits, decimal_exponent, min_exp=-4, max_exp=15):
    s = "".join(map(str, digits))
    k = len(s)
    n = k + decimal_exponent
    if k <= n <= max_exp:
        return s + "0" * (n - k) + ".0"
    if 0 < n <= max_exp:
        return s[:n] + "." + s[n:]
    if min_exp < n <= 0:
        return "0." + "0" * (-n) + s
    mantissa = s if k == 1 else s[0] + "." + s[1:]
    exponent = n - 1
    return f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def dump_float(value):
    if not math.isfinite(value):
        return "null"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0.0"
    return sign + _format(*_grisu2(abs(value)))


def dumps(value):
    """nlohmann::json::dump() with no indent, for dicts, lists, str, int, float, bool, None."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(key)}:{dumps(value[key])}" for key in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    if isinstance(value, float):
        return dump_float(value)
    # Plain ASCII strings, ints, bools and None print alike in both.
    return json.dumps(value)
