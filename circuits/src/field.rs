//! Signed integers as BN254 scalars: `x >= 0` is `x`, `x < 0` is `p - |x|`.

use halo2_base::utils::ScalarField;

use crate::Fr;

/// The field element of a signed 128-bit integer.
pub fn fe(x: i128) -> Fr {
    let m = fe_u128(x.unsigned_abs());
    if x < 0 {
        -m
    } else {
        m
    }
}

/// The field element of a signed 64-bit integer.
pub fn fe64(x: i64) -> Fr {
    fe(x as i128)
}

/// The field element of an unsigned 128-bit integer (salts).
pub fn fe_u128(x: u128) -> Fr {
    Fr::from_raw([x as u64, (x >> 64) as u64, 0, 0])
}

/// The signed integer a field element represents, if it is within `i128`.
pub fn to_i128(f: &Fr) -> Option<i128> {
    let bytes = f.to_bytes_le();
    let hi_zero = bytes[16..].iter().all(|&b| b == 0);
    if hi_zero {
        let mut b = [0u8; 16];
        b.copy_from_slice(&bytes[..16]);
        return i128::try_from(u128::from_le_bytes(b)).ok();
    }
    let neg = (-*f).to_bytes_le();
    if neg[16..].iter().all(|&b| b == 0) {
        let mut b = [0u8; 16];
        b.copy_from_slice(&neg[..16]);
        return i128::try_from(u128::from_le_bytes(b)).ok().map(|v| -v);
    }
    None
}

/// Hex of a field element, big-endian, `0x`-prefixed (how commitments are printed).
pub fn to_hex(f: &Fr) -> String {
    let mut b = f.to_bytes_le();
    b.reverse();
    format!("0x{}", hex::encode(b))
}

/// Parses [`to_hex`] output.
pub fn from_hex(s: &str) -> Option<Fr> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    let mut b = hex::decode(s).ok()?;
    if b.len() != 32 {
        return None;
    }
    b.reverse();
    let mut arr = [0u8; 32];
    arr.copy_from_slice(&b);
    Option::from(<Fr as halo2_base::halo2_proofs::halo2curves::ff::PrimeField>::from_repr(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_round_trip() {
        for x in [0i128, 1, -1, 1 << 100, -(1 << 100), i64::MIN as i128] {
            assert_eq!(to_i128(&fe(x)), Some(x));
        }
        assert_eq!(fe(-5) + fe(5), Fr::zero());
    }

    #[test]
    fn hex_round_trip() {
        let f = fe(-12345);
        assert_eq!(from_hex(&to_hex(&f)), Some(f));
        assert_eq!(from_hex("0x12"), None);
    }
}
