//! The access log's formats, as Envoy's default access log writes them.

/// `t` as Envoy's default access log writes `%START_TIME%`: ISO 8601 in UTC with milliseconds
/// (`2026-12-01T09:17:37.123Z`). Days to civil date by Howard Hinnant's `civil_from_days`.
pub fn start_time(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// An Envoy-style access log line: start time, method, path, status, flags, upstream host,
/// duration in ms, proxy name.
pub fn line(
    start: Option<std::time::SystemTime>,
    head: &proxy_engine::RequestHead,
    o: &proxy_engine::Outcome,
    upstream: Option<std::net::SocketAddr>,
    latency: proxy_engine::Nanos,
    proxy: &str,
) -> String {
    let start = start.map_or_else(|| "-".to_owned(), start_time);
    let upstream = upstream.map_or_else(|| "-".to_owned(), |a| a.to_string());
    format!(
        "[{start}] \"{} {}\" {} {} {} {} {proxy}",
        head.method,
        head.path,
        o.status,
        o.flags,
        upstream,
        latency.0 / 1_000_000,
    )
}

#[cfg(test)]
mod tests {
    use super::start_time;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn start_time_is_iso8601_utc_with_milliseconds() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms);
        assert_eq!(start_time(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // Envoy's documentation example.
        assert_eq!(
            start_time(at(1_460_751_420, 310)),
            "2016-04-15T20:17:00.310Z"
        );
        // A leap day and the end of a century year.
        assert_eq!(start_time(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(
            start_time(at(4_107_542_399, 999)),
            "2100-02-28T23:59:59.999Z"
        );
    }
}
