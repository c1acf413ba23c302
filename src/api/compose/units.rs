//! Parsers for the value syntaxes compose borrows from Go: durations, byte sizes, CPU counts.

use std::sync::LazyLock;

use regex::Regex;

const NANOS_PER_UNIT: &[(&str, u64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a duration exactly as Go's `time.ParseDuration` does ("1m30s", "1.5h", "-500ms", "0"),
/// returning nanoseconds.
///
/// # Errors
/// A message naming the input when it is not Go duration syntax or overflows an `i64`.
pub fn parse_go_duration(input: &str) -> Result<i64, String> {
    let invalid = || format!("invalid duration {input:?}");
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit_name = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit = NANOS_PER_UNIT
            .iter()
            .find(|(name, _)| *name == unit_name)
            .map(|(_, nanos)| *nanos)
            .ok_or_else(|| {
                if unit_name.is_empty() {
                    format!("missing unit in duration {input:?}")
                } else {
                    format!("unknown unit {unit_name:?} in duration {input:?}")
                }
            })?;
        let whole: u64 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(unit).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            // Go keeps at most 19 significant fraction digits and scales with floats.
            let digits = &frac_part[..frac_part.len().min(19)];
            let fraction: u64 = digits.parse().map_err(|_| invalid())?;
            let scale = 10f64.powi(i32::try_from(digits.len()).map_err(|_| invalid())?);
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let extra = (fraction as f64 * (unit as f64 / scale)) as u64;
            value = value.checked_add(extra).ok_or_else(invalid)?;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
    }
    let total = i64::try_from(total).map_err(|_| invalid())?;
    Ok(if negative { -total } else { total })
}

static RAM_SIZE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$").expect("static regex")
});

/// Parses a byte size as the docker CLI's `units.RAMInBytes` does: binary multiples, so
/// "50M" is 50 MiB and "1.5g" is 1.5 GiB; the unit and a trailing "b"/"ib" are case-insensitive.
///
/// # Errors
/// A message naming the input when it is not a size.
pub fn parse_ram_bytes(input: &str) -> Result<i64, String> {
    let invalid = || format!("invalid size {input:?}");
    let caps = RAM_SIZE.captures(input).ok_or_else(invalid)?;
    let number: f64 = caps[1].parse().map_err(|_| invalid())?;
    let multiplier: f64 = match caps.get(2).map(|m| m.as_str().to_ascii_lowercase()) {
        None => 1.0,
        Some(unit) => {
            let power = "kmgtp".find(&unit).ok_or_else(invalid)? + 1;
            1024f64.powi(i32::try_from(power).map_err(|_| invalid())?)
        }
    };
    #[allow(clippy::cast_possible_truncation)]
    let bytes = (number * multiplier) as i64;
    Ok(bytes)
}

/// Parses a CPU count ("0.5", "2") into nano-CPUs, rejecting values finer than 1e-9 as the
/// docker CLI's `ParseCPUs` does.
///
/// # Errors
/// A message naming the input when it is not a non-negative decimal or is too precise.
pub fn parse_cpus(input: &str) -> Result<i64, String> {
    let invalid = || format!("invalid CPU count {input:?}");
    let (whole, fraction) = input.split_once('.').unwrap_or((input, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let significant = fraction.trim_end_matches('0');
    if significant.len() > 9 {
        return Err(format!("CPU count {input:?} is too precise"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    let padded = format!("{significant:0<9}");
    let nanos_fraction: i64 = padded.parse().map_err(|_| invalid())?;
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos_fraction))
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_go() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("10s", 10_000_000_000),
            ("1m30s", 90_000_000_000),
            ("500ms", 500_000_000),
            ("1.5h", 5_400_000_000_000),
            ("-1.5s", -1_500_000_000),
            ("+2m", 120_000_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("3µs", 3_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
        ];
        for (input, nanos) in cases {
            assert_eq!(parse_go_duration(input), Ok(*nanos), "{input}");
        }
    }

    #[test]
    fn bad_go_durations_are_rejected() {
        for input in [
            "",
            "10",
            "1d",
            "s",
            "1.5",
            "-",
            ".s",
            "1h 2m",
            "9999999999h",
        ] {
            assert!(parse_go_duration(input).is_err(), "{input}");
        }
    }

    #[test]
    fn ram_sizes_are_binary_multiples() {
        let cases: &[(&str, i64)] = &[
            ("50M", 50 * 1024 * 1024),
            ("50m", 50 * 1024 * 1024),
            ("1g", 1024 * 1024 * 1024),
            ("1.5GB", 1_610_612_736),
            ("512", 512),
            ("64kib", 65_536),
            ("2 MB", 2 * 1024 * 1024),
        ];
        for (input, bytes) in cases {
            assert_eq!(parse_ram_bytes(input), Ok(*bytes), "{input}");
        }
        for input in ["", "M", "50X", "-5M", "1..5M"] {
            assert!(parse_ram_bytes(input).is_err(), "{input}");
        }
    }

    #[test]
    fn cpus_become_nano_cpus() {
        assert_eq!(parse_cpus("0.2"), Ok(200_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus(".5"), Ok(500_000_000));
        assert_eq!(parse_cpus("0.0000000010"), Ok(1));
        assert!(parse_cpus("0.0000000001").is_err());
        assert!(parse_cpus("half").is_err());
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("").is_err());
    }
}
