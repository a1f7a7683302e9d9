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
