//! Path normalization before routing, as Istio's default mesh setting asks of Envoy.
//!
//! Istio's `meshConfig.pathNormalization` defaults to `BASE`, which sets the HTTP connection
//! manager's `normalize_path: true` and `path_with_escaped_slashes_action: KEEP_UNCHANGED`
//! (Istio `pilot/pkg/networking/core/listener_builder.go`). Envoy then canonicalizes the path part
//! of `:path` with Chromium's URL path canonicalizer (`source/common/http/path_utility.cc`,
//! `PathUtil::canonicalPath`) before matching, and forwards the normalized path upstream.
//!
//! What is normalized (the expectations of Istio's own normalization tests for `BASE`):
//! * a fragment (`#…`) is dropped;
//! * a backslash is a slash (`/app\admin` → `/app/admin`);
//! * a percent-encoded unreserved character is decoded (`%30` → `0`, `%2E` → `.`, `%7e` → `~`);
//! * dot segments are resolved as RFC 3986 §5.2.4 does, `..` stopping at the root
//!   (`/a/./b` → `/a/b`, `/x/../admin` → `/admin`, `/app//../admin` → `/app/admin`: an empty
//!   segment is a segment);
//! * bytes that may not appear in a path (controls, space, `"`, `<`, `>`, `` ` ``, `{`, `}`,
//!   DEL and non-ASCII) are percent-encoded.
//!
//! What is not: `//` stays (merging slashes is `MERGE_SLASHES`, not the default); `%2F`, `%5C` and
//! other reserved escapes stay encoded, in the case they were written (decoding them is
//! `DECODE_AND_MERGE_SLASHES`); the query string is kept byte for byte. A path that does not
//! start with `/` (`*`, an absolute URI) is left alone.

use std::borrow::Cow;

/// `path` (a `:path`, query included) as Envoy's `normalize_path` routes and forwards it;
/// borrowed when it is already normal.
pub(crate) fn normalize(path: &str) -> Cow<'_, str> {
    if !path.starts_with('/') || is_normal(path) {
        return Cow::Borrowed(path);
    }
    let without_fragment = path.split_once('#').map_or(path, |(p, _)| p);
    let (part, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (without_fragment, None),
    };
    let mut out = remove_dot_segments(&canonical_bytes(part));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Cow::Owned(out)
}

/// True when normalization would not change `path`: no fragment, backslash, escape, dot segment
/// or byte that needs escaping in the path part, and no fragment after the query. One pass over
/// the bytes (it runs on every
/// request).
fn is_normal(path: &str) -> bool {
    // Dots since the last `/` while the segment is only dots; `None` once it holds another byte.
    let mut dots: Option<u8> = Some(0);
    for (i, &b) in path.as_bytes().iter().enumerate() {
        match b {
            // The query is kept as is, up to a fragment (which is dropped).
            b'?' => return !matches!(dots, Some(1 | 2)) && !path[i..].contains('#'),
            b'#' | b'\\' | b'%' => return false,
            b'/' if matches!(dots, Some(1 | 2)) => return false,
            b'/' => dots = Some(0),
            b'.' => dots = dots.map(|d| d.saturating_add(1)),
            _ if needs_escape(b) => return false,
            _ => dots = None,
        }
    }
    !matches!(dots, Some(1 | 2))
}

/// Bytes Chromium's path canonicalizer percent-encodes.
fn needs_escape(b: u8) -> bool {
    b <= 0x20 || b >= 0x7f || matches!(b, b'"' | b'<' | b'>' | b'`' | b'{' | b'}')
}

/// RFC 3986 unreserved characters: an escape of one of these is decoded.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The path part with backslashes as slashes, unreserved escapes decoded and bytes that need
/// it escaped (upper-case hex, as Chromium writes new escapes).
fn canonical_bytes(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut out = String::with_capacity(part.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => out.push('/'),
            b'%' => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    let decoded = hex(h) * 16 + hex(l);
                    if unreserved(decoded) {
                        out.push(char::from(decoded));
                    } else {
                        out.push('%');
                        out.push(char::from(h));
                        out.push(char::from(l));
                    }
                    i += 2;
                }
                // A `%` that starts no escape is kept as written.
                _ => out.push('%'),
            },
            _ if needs_escape(b) => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            _ => out.push(char::from(b)),
        }
        i += 1;
    }
    out
}

/// The value of an ASCII hex digit (the caller checked it is one).
fn hex(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    }
}

/// RFC 3986 §5.2.4 on a path that starts with `/`: `.` segments dropped, `..` removes the
/// segment before it (none above the root); a trailing `.` or `..` leaves a trailing slash.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    // The caller guarantees the leading `/`; skip it so the first segment is the first name.
    for segment in path[1..].split('/') {
        trailing_slash = false;
        match segment {
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    /// Istio's expectations for `BASE` normalization (its integration test table), plus query
    /// and escaping cases.
    #[test]
    fn normalizes_as_istio_base() {
        #[rustfmt::skip]
        let cases = [
            ("/", "/"),
            ("/app#foo", "/app"),
            ("/app/", "/app/"),
            ("/app/../admin", "/admin"),
            ("/app", "/app"),
            ("/app//", "/app//"),
            ("/app/%2f", "/app/%2f"),
            ("/app%2f/", "/app%2f/"),
            ("/xyz%30..//abc", "/xyz0..//abc"),
            ("/app/%2E./admin", "/admin"),
            (r"/app\admin", "/app/admin"),
            (r"/app/\/\/\admin", "/app//////admin"),
            ("/%2Fapp%5cadmin%5Cabc", "/%2Fapp%5cadmin%5Cabc"),
            (r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc", "/%5Capp%2f%5c%2F..%2fadmin%5c/abc"),
            ("/app//../admin", "/app/admin"),
            ("/app//../../admin", "/admin"),
            ("/./admin", "/admin"),
            ("/x/../admin", "/admin"),
            ("/../../admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/x/../admin?q=/../a#b", "/admin?q=/../a"),
            ("/a b", "/a%20b"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/100%", "/100%"),
            ("/%zz", "/%zz"),
            ("*", "*"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "normalize({input:?})");
        }
    }

    /// The fast check never skips a path the full normalization would change.
    #[test]
    fn the_fast_check_agrees_with_the_full_normalization() {
        let alphabet = ["/", ".", "a", "%", "2e", "?", "#", "\\", " ", "..", "/."];
        let mut x: u64 = 7;
        for _ in 0..20_000 {
            let mut p = String::from("/");
            for _ in 0..(x % 8) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                p.push_str(alphabet[(x >> 33) as usize % alphabet.len()]);
            }
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if super::is_normal(&p) {
                let without_fragment = p.split_once('#').map_or(p.as_str(), |(a, _)| a);
                let (part, query) = match without_fragment.split_once('?') {
                    Some((a, q)) => (a, Some(q)),
                    None => (without_fragment, None),
                };
                let mut full = super::remove_dot_segments(&super::canonical_bytes(part));
                if let Some(q) = query {
                    full.push('?');
                    full.push_str(q);
                }
                assert_eq!(full, p, "is_normal({p:?})");
            }
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in ["/", "/a/b?x=../y", "/v1.2/..x/.y", "/a//b"] {
            assert!(
                matches!(normalize(p), std::borrow::Cow::Borrowed(_)),
                "{p} should be kept as is"
            );
        }
    }
}
