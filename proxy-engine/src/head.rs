//! What the engine knows of a request's head (`RequestHead`, shared copy-on-write) and the
//! compiled header operations routes apply (`HeaderEdit`). A leaf module.

use std::sync::Arc;

/// Request headers as ordered name/value pairs; names are lower-case. Shared, so cloning a head
/// is a few reference-count increments.
pub type Headers = Arc<[(Arc<str>, Arc<str>)]>;

/// What the engine needs to know of a request: the HTTP request line and headers.
///
/// Shared copy-on-write: cloning is one reference-count increment (heads are cloned on every
/// hop and action), and writing a field through `DerefMut` copies the parts only if they are
/// shared. Read fields directly (`head.path`); build one with `RequestHead::new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead(Arc<HeadParts>);

/// The fields of a `RequestHead`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadParts {
    /// HTTP method, upper-case (`GET`).
    pub method: Arc<str>,
    /// `:authority` / `Host`: the service the request is for, optionally with `:port`.
    pub authority: Arc<str>,
    /// `:path`, including any query string.
    pub path: Arc<str>,
    /// `:scheme`: `http` or `https`.
    pub scheme: Arc<str>,
    /// Other headers.
    pub headers: Headers,
    /// The downstream peer (client address or calling workload), used by `use_source_ip`
    /// consistent hashing.
    pub source: Arc<str>,
}

impl std::ops::Deref for RequestHead {
    type Target = HeadParts;
    fn deref(&self) -> &HeadParts {
        &self.0
    }
}

impl std::ops::DerefMut for RequestHead {
    /// Copy-on-write: the parts are copied first if another head shares them.
    fn deref_mut(&mut self) -> &mut HeadParts {
        Arc::make_mut(&mut self.0)
    }
}

impl RequestHead {
    /// Whether `other` is this very head (shared, never written since): a driver that keeps a
    /// copy of the head it handed in can tell whether the engine changed it.
    pub fn is(&self, other: &RequestHead) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A head with these parts.
    pub fn new(parts: HeadParts) -> RequestHead {
        RequestHead(Arc::new(parts))
    }

    /// A `GET` for `path` on `authority` with no headers.
    pub fn get(authority: &str, path: &str) -> RequestHead {
        RequestHead::new(HeadParts {
            method: Arc::from("GET"),
            authority: Arc::from(authority),
            path: Arc::from(path),
            scheme: Arc::from("http"),
            headers: Arc::from(Vec::new()),
            source: Arc::from(""),
        })
    }

    /// The host part of the authority, without a port.
    pub fn host(&self) -> &str {
        let a: &str = &self.authority;
        match a.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => a,
        }
    }

    /// The first value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.len() == name.len() && starts_with(n, name))
            .map(|(_, v)| &**v)
    }

    /// Every value of header `name` (lower-case) joined with `,`, as Envoy matches a header
    /// sent more than once; borrowed when it is sent once.
    pub fn header_joined(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        let is = |n: &str| n.len() == name.len() && starts_with(n, name);
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| is(n))
            .map(|(_, v)| &**v);
        let first = values.next()?;
        let Some(second) = values.next() else {
            return Some(std::borrow::Cow::Borrowed(first));
        };
        let mut joined = format!("{first},{second}");
        for v in values {
            joined.push(',');
            joined.push_str(v);
        }
        Some(std::borrow::Cow::Owned(joined))
    }
}

/// Compiled header operations; names lower-case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdit {
    /// Overwrite or add.
    pub set: Vec<(Arc<str>, Arc<str>)>,
    /// Append (comma list) or add.
    pub add: Vec<(Arc<str>, Arc<str>)>,
    /// Remove.
    pub remove: Vec<Arc<str>>,
}

impl HeaderEdit {
    /// Whether the edit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// `hay.starts_with(needle)`, rejecting most mismatches on the needle's first and last byte
/// before a full compare: route tables are mostly near-misses (`/svc10/` vs `/svc5/`), and
/// two byte compares are much cheaper than a `memcmp` call.
#[inline]
pub(crate) fn starts_with(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    match n.len() {
        0 => true,
        len if len > h.len() => false,
        len => h[0] == n[0] && h[len - 1] == n[len - 1] && h[..len] == *n,
    }
}
