//! Vectors from NumPy's `.npy` files, the usual way embeddings leave Python: a 2-D little-endian
//! array of `float16`, `float32` or `int32`, read into `f32` rows. Platform-free: it parses
//! bytes, so the browser can read a file the user picks, and `grape import` reads from disk.

use crate::error::{Error, Result};

/// Rows of vectors, row-major.
///
/// ```
/// // A 2 x 2 float32 array, as numpy.save writes it.
/// let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
/// let mut file = b"\x93NUMPY\x01\x00".to_vec();
/// file.extend_from_slice(&(header.len() as u16).to_le_bytes());
/// file.extend_from_slice(header.as_bytes());
/// for x in [1.0f32, 2.0, 3.0, 4.0] {
///     file.extend_from_slice(&x.to_le_bytes());
/// }
/// let v = grape_vector_db::npy::parse(&file)?;
/// assert_eq!((v.rows, v.dim), (2, 2));
/// assert_eq!(v.row(1), &[3.0, 4.0]);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    /// Number of vectors.
    pub rows: usize,
    /// Components per vector.
    pub dim: usize,
    /// `rows * dim` components, row after row.
    pub data: Vec<f32>,
}

impl Vectors {
    /// The `i`-th vector.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Parses a `.npy` file's bytes: a 2-D C-order array of `<f2`, `<f4` or `<i4` (read as `f32`).
pub fn parse(bytes: &[u8]) -> Result<Vectors> {
    let bad = |why: &str| Error::MalformedRequest(format!(".npy: {why}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (bad magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
            10usize,
        ),
        _ if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize,
            12,
        ),
        _ => return Err(bad("truncated header")),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated or non-UTF-8 header"))?;
    let (size, kind) = [
        ("'<f2'", (2, 'h')),
        ("'<f4'", (4, 'f')),
        ("'<i4'", (4, 'i')),
    ]
    .into_iter()
    .find(|(descr, _)| header.contains(descr))
    .map(|(_, kind)| kind)
    .ok_or_else(|| bad("only <f2, <f4 and <i4 arrays are supported"))?;
    if header.contains("'fortran_order': True") {
        return Err(bad("Fortran order is not supported (save a C-order array)"));
    }
    let dims: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape in the header"))?
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let [rows, dim] = dims[..] else {
        return Err(bad("expected a 2-D array (rows, dimension)"));
    };
    let body = &bytes[start + header_len..];
    if Some(body.len()) != rows.checked_mul(dim).and_then(|n| n.checked_mul(size)) {
        return Err(bad("the file's size does not match its shape"));
    }
    let data = match kind {
        'h' => body
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        'f' => body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
        _ => body
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as f32)
            .collect(),
    };
    Ok(Vectors { rows, dim, data })
}

/// IEEE half to single precision (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = frac * 2^-24.
            let v = frac as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        file.extend_from_slice(&(header.len() as u16).to_le_bytes());
        file.extend_from_slice(header.as_bytes());
        file.extend_from_slice(body);
        file
    }

    #[test]
    fn f16_conversion_is_exact_on_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn halves_ints_and_refusals() {
        // 1.0, -2.0, 0.5 and the smallest subnormal, as float16.
        let halves: Vec<u8> = [0x3c00u16, 0xc000, 0x3800, 0x0001]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let v = parse(&npy("<f2", "(2, 2)", &halves)).unwrap();
        assert_eq!(v.data, vec![1.0, -2.0, 0.5, 2f32.powi(-24)]);
        let ints: Vec<u8> = [7i32, -1].iter().flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(
            parse(&npy("<i4", "(1, 2)", &ints)).unwrap().data,
            vec![7.0, -1.0]
        );
        for (file, why) in [
            (npy("<f8", "(1, 1)", &[0; 8]), "supported"),
            (npy("<f4", "(3,)", &[0; 12]), "2-D"),
            (npy("<f4", "(2, 2)", &[0; 12]), "size"),
            (b"not numpy".to_vec(), "magic"),
        ] {
            let err = parse(&file).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
