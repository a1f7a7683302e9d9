//! The exposition formats, and the HTTP content negotiation that picks one
//! (`Accept`) and compression (`Accept-Encoding`).

/// The exposition formats /metrics negotiates between.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Picks the format the client ranks highest. Prometheus asks for
/// OpenMetrics first and text 0.0.4 second; curl sends `*/*` and gets 0.0.4.
pub fn format_for(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut best = (0.0f32, Format::Text);
    for (range, q) in media_ranges(accept) {
        let format = match range.as_str() {
            "application/openmetrics-text" => Format::OpenMetrics,
            "text/plain" | "text/*" | "*/*" => Format::Text,
            _ => continue,
        };
        // On a tie the earlier range wins, as clients list preferences first.
        if q > best.0 {
            best = (q, format);
        }
    }
    best.1
}

/// Whether the client accepts a gzip-encoded response.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|value| {
        media_ranges(value).any(|(coding, q)| q > 0.0 && (coding == "gzip" || coding == "*"))
    })
}

/// `type/subtype;param=x;q=0.5, ...` → (lowercased range, q).
fn media_ranges(header: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    header.split(',').filter_map(|item| {
        let mut parts = item.split(';');
        let range = parts.next()?.trim().to_ascii_lowercase();
        if range.is_empty() {
            return None;
        }
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        Some((range, q))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_scrape_accept_gets_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0,\
            application/openmetrics-text;version=0.0.1;q=0.75,\
            text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(format_for(Some(prometheus)), Format::OpenMetrics);
    }

    #[test]
    fn text_preferred_or_unspecified_gets_text() {
        assert_eq!(format_for(None), Format::Text);
        assert_eq!(format_for(Some("*/*")), Format::Text);
        assert_eq!(format_for(Some("text/plain;version=0.0.4")), Format::Text);
        assert_eq!(
            format_for(Some("application/openmetrics-text;q=0.2, text/plain;q=0.9")),
            Format::Text
        );
        assert_eq!(format_for(Some("application/json")), Format::Text);
    }

    proptest::proptest! {
        /// Whatever a client sends, negotiation answers, and never panics.
        #[test]
        fn any_accept_headers_negotiate(accept in "\\PC{0,120}", encoding in "\\PC{0,60}") {
            let _ = format_for(Some(&accept));
            let _ = accepts_gzip(Some(&encoding));
        }

        /// A list of ranges with q-values picks the highest, the first on a tie.
        #[test]
        fn highest_q_wins(
            om in 0u16..=1000,
            text in 0u16..=1000,
            om_first in proptest::bool::ANY,
        ) {
            let (om_q, text_q) = (f32::from(om) / 1000.0, f32::from(text) / 1000.0);
            let om_range = format!("application/openmetrics-text;version=1.0.0;q={om_q}");
            let text_range = format!("text/plain;version=0.0.4;q={text_q}");
            let header = if om_first {
                format!("{om_range}, {text_range}")
            } else {
                format!("{text_range}, {om_range}")
            };
            let want = if om_q > text_q || (om_q == text_q && om_first && om_q > 0.0) {
                Format::OpenMetrics
            } else {
                Format::Text
            };
            proptest::prop_assert_eq!(format_for(Some(&header)), want);
        }

        #[test]
        fn gzip_follows_its_q(q in 0u16..=1000, other in "[a-z]{1,8}") {
            let q = f32::from(q) / 1000.0;
            let header = format!("{other};q=1, gzip;q={q}");
            proptest::prop_assert_eq!(accepts_gzip(Some(&header)), q > 0.0 || other == "gzip");
        }
    }

    #[test]
    fn gzip_only_when_offered() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }
}
