//! Bounded text: how much of a foreign message an error, event, status or log line quotes.
//!
//! dockerd quotes the request it refuses (a 1.4 MB config value came back whole in
//! its 400), and etcd takes values up to about 1.5 MiB: a message built from such an
//! answer, stored as an event on every retry, made the event log too large to list.
//! Whatever carries a message it did not write itself cuts it with [`truncate`].

use std::borrow::Cow;

/// How many bytes of a foreign message (dockerd's, etcd's) are kept by default:
/// enough for any real error, small enough that thousands fit in one etcd listing.
pub const MESSAGE_LIMIT: usize = 4 * 1024;

/// `s` itself when it is at most `max` bytes long; otherwise its longest prefix that,
/// followed by a marker saying how much was cut (`… (1432 bytes more)`), fits in
/// `max` bytes.
///
/// The cut falls on a char boundary, so the result is valid UTF-8 and never splits a
/// multibyte character. When `max` is too small to hold even the marker, the result
/// is the marker alone (the only case where it is longer than `max`): a reader must
/// always see that something was cut.
#[must_use]
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    // The count of dropped bytes is at most `s.len()`, so a marker with that many
    // digits is at least as long as the real one: the prefix plus the real marker fit.
    let room = max.saturating_sub(marker(s.len()).len());
    let cut = s.floor_char_boundary(room);
    let mut out = String::with_capacity(max);
    out.push_str(&s[..cut]);
    out.push_str(&marker(s.len() - cut));
    Cow::Owned(out)
}

fn marker(dropped: usize) -> String {
    format!("… ({dropped} bytes more)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_borrowed_unchanged() {
        assert!(matches!(truncate("small", 5), Cow::Borrowed("small")));
        assert!(matches!(truncate("", 0), Cow::Borrowed("")));
    }

    #[test]
    fn long_text_is_cut_to_the_bound_and_says_how_much_is_missing() {
        let s = "x".repeat(10_000);
        let cut = truncate(&s, 100);
        assert!(cut.len() <= 100, "{} bytes", cut.len());
        let kept = cut.find('…').unwrap();
        assert_eq!(&cut[kept..], format!("… ({} bytes more)", 10_000 - kept));
        assert!(s.starts_with(&cut[..kept]));
        assert!(kept > 70, "the marker takes what it needs, no more: {kept}");
    }

    #[test]
    fn a_multibyte_character_is_never_split() {
        // 'é' is 2 bytes, '€' 3, '🦀' 4: every possible bound lands inside one of them.
        let s = "é€🦀".repeat(200);
        for max in 30..60 {
            let cut = truncate(&s, max);
            assert!(cut.len() <= max, "max {max}: {} bytes", cut.len());
            let kept = cut.find("… (").unwrap();
            assert!(s.is_char_boundary(kept), "max {max}");
            let dropped: usize = cut[kept..]
                .trim_start_matches("… (")
                .trim_end_matches(" bytes more)")
                .parse()
                .unwrap();
            assert_eq!(kept + dropped, s.len(), "max {max}");
        }
    }

    #[test]
    fn a_bound_smaller_than_the_marker_still_marks_the_cut() {
        assert_eq!(truncate("abcdefghij", 3), "… (10 bytes more)");
        assert_eq!(truncate("abcdefghij", 0), "… (10 bytes more)");
    }
}
