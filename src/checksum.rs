//! CRC-32C (Castagnoli): the checksum of log records, segment sections, manifests and the OPFS
//! directory slots.
//!
//! Natively this is the `crc32c` crate, which uses the CPU's CRC instructions (SSE4.2, ARMv8).
//! WebAssembly has none, and the crate's software fallback ships an 8 KiB table that barely
//! compresses, so there the same slicing-by-8 table is built on first use instead (a few
//! microseconds). Both are compared on random data in the native tests.

/// CRC-32C of `data` continuing from `crc`, the CRC of what came before (0 to start): the CRC
/// of a file written in chunks, chunk by chunk.
#[inline]
pub(crate) fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(not(target_arch = "wasm32"))]
    return crc32c::crc32c_append(crc, data);
    #[cfg(target_arch = "wasm32")]
    return sliced::append(crc, data);
}

/// CRC-32C of `data`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// Slicing-by-8 CRC-32C: eight bytes per step through eight 256-entry tables.
#[cfg(any(target_arch = "wasm32", test))]
mod sliced {
    use std::sync::OnceLock;

    /// The Castagnoli polynomial, bit-reversed.
    const POLYNOMIAL: u32 = 0x82F6_3B78;

    type Tables = [[u32; 256]; 8];

    fn tables() -> &'static Tables {
        static TABLES: OnceLock<Box<Tables>> = OnceLock::new();
        TABLES.get_or_init(|| {
            let mut t = Box::new([[0u32; 256]; 8]);
            for n in 0..256u32 {
                let mut crc = n;
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ POLYNOMIAL
                    } else {
                        crc >> 1
                    };
                }
                t[0][n as usize] = crc;
            }
            for k in 1..8 {
                for n in 0..256 {
                    let prev = t[k - 1][n];
                    t[k][n] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
                }
            }
            t
        })
    }

    pub(super) fn append(crc: u32, data: &[u8]) -> u32 {
        let t = tables();
        let mut crc = !crc;
        let (blocks, rest) = data.as_chunks::<8>();
        for block in blocks {
            let v = u64::from_le_bytes(*block) ^ u64::from(crc);
            let byte = |i: u32| ((v >> (8 * i)) & 0xff) as usize;
            crc = t[7][byte(0)]
                ^ t[6][byte(1)]
                ^ t[5][byte(2)]
                ^ t[4][byte(3)]
                ^ t[3][byte(4)]
                ^ t[2][byte(5)]
                ^ t[1][byte(6)]
                ^ t[0][byte(7)];
        }
        for &b in rest {
            crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        !crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn known_answers_and_appending() {
        // The check value of CRC-32C (RFC 3720, appendix B.4).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(sliced::append(0, b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[]), 0);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c_append(crc32c(b"1234"), b"56789"), 0xE306_9283);
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_table_version_equals_the_crate_on_any_data() {
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let data: Vec<u8> = (0..5000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect();
        for len in (0..200).chain([1000, 4093, 5000]) {
            for start in 0..8.min(data.len() - len) {
                let part = &data[start..start + len];
                assert_eq!(
                    sliced::append(0, part),
                    crc32c::crc32c(part),
                    "{start}+{len}"
                );
                let seed = crc32c::crc32c(&data[..start]);
                assert_eq!(
                    sliced::append(seed, part),
                    crc32c::crc32c_append(seed, part),
                    "append {start}+{len}"
                );
            }
        }
    }
}
