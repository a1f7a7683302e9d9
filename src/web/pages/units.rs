//! Byte counts for people: binary units, three significant digits.

const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// `bytes` as "999 B", "1.00 KiB", "12.3 MiB", "456 GiB".
pub fn human_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let exponent = ((63 - bytes.leading_zeros()) / 10) as usize;
    let value = bytes as f64 / (1u64 << (10 * exponent)) as f64;
    // Rounding can reach 1024 of a unit: show it as 1.00 of the next one.
    if value >= 1023.5 && exponent + 1 < UNITS.len() {
        return format!("1.00 {}", UNITS[exponent + 1]);
    }
    let decimals = match value {
        v if v < 9.995 => 2,
        v if v < 99.95 => 1,
        _ => 0,
    };
    format!("{value:.decimals$} {}", UNITS[exponent])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn three_significant_digits_in_binary_units() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.00 KiB"),
            (1536, "1.50 KiB"),
            (10 * 1024 - 1, "10.0 KiB"),
            (123 * 1024 * 1024 + 400_000, "123 MiB"),
            (1024 * 1024 - 1, "1.00 MiB"),
            (40 << 30, "40.0 GiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(human_bytes(bytes), text, "{bytes}");
        }
    }
}
