//! Table-driven routing: request → expected destination or local reply, through a real `Proxy`
//! on a mesh written in the scenario format. Covers precedence (first match wins), case
//! sensitivity, raw-string prefixes, whole-path regexes, `without_headers` with absent headers,
//! presence matches, query parameters, OR across match blocks, redirects, direct responses,
//! rewrites (what part of the path each match kind replaces), redirects keeping the query,
//! header operations, case-insensitive hosts, repeated headers, lone zero-weight destinations,
//! path normalization, undefined subsets (`NC`) and no route (`NR`).

use proxy_engine::{
    Action, AttemptEnd, CompiledMesh, Endpoint, MeshConfig, Proxy, ProxyRole, Registry,
    RequestHead, RequestId, ResponseHead, Time,
};
use std::collections::BTreeMap;
use std::sync::Arc;

const MESH: &str = r#"Mesh(
    virtual_services: [
        VirtualService(hosts: ["reviews"], http: [
            HttpRoute(name: "jason", match: [(headers: {"end-user": Exact("jason")})],
                route: [(destination: (host: "reviews", subset: "v2"))]),
            HttpRoute(name: "prefix-v2", match: [(uri: Prefix("/v2"))],
                route: [(destination: (host: "reviews", subset: "v3"))]),
            HttpRoute(name: "exact-ci", match: [(uri: Exact("/Reviews/Exact"), ignore_uri_case: true)],
                route: [(destination: (host: "reviews", subset: "v1"))]),
            HttpRoute(name: "regex", match: [(uri: Regex("/items/[0-9]+"))],
                route: [(destination: (host: "reviews", subset: "v2"))]),
            HttpRoute(name: "without", match: [(uri: Prefix("/w"), without_headers: {"x-canary": Exact("true")})],
                route: [(destination: (host: "reviews", subset: "v1"))]),
            HttpRoute(name: "present", match: [(headers: {"x-debug": Present})],
                route: [(destination: (host: "reviews", subset: "v3"))]),
            HttpRoute(name: "query", match: [(query_params: {"mode": Exact("beta")})],
                route: [(destination: (host: "reviews", subset: "v2"))]),
            HttpRoute(name: "or", match: [(method: Exact("POST")), (authority: Exact("reviews:9080"))],
                route: [(destination: (host: "reviews", subset: "v3"))]),
            HttpRoute(name: "redirect", match: [(uri: Prefix("/old"))], redirect: (uri: "/new")),
            HttpRoute(name: "moved", match: [(uri: Exact("/moved"))],
                redirect: (authority: "reviews.example.com", scheme: "https", redirect_code: 302)),
            HttpRoute(name: "direct", match: [(uri: Prefix("/health"))],
                direct_response: (status: 200, body: "ok")),
            HttpRoute(name: "rewrite", match: [(uri: Prefix("/api/"))], rewrite: (uri: "/"),
                route: [(destination: (host: "ratings"))]),
            HttpRoute(name: "rewrite-auth", match: [(uri: Prefix("/auth"))], rewrite: (authority: "ratings.internal"),
                route: [(destination: (host: "ratings"))]),
            HttpRoute(name: "nc", match: [(uri: Prefix("/nc"))],
                route: [(destination: (host: "reviews", subset: "v9"))]),
            HttpRoute(name: "hdr", match: [(uri: Prefix("/hdr"))],
                headers: (request: (set: {"x-a": "1"}, add: {"x-b": "2"}, remove: ["x-c"])),
                route: [(destination: (host: "reviews", subset: "v1"))]),
            HttpRoute(name: "user-prefix", match: [(headers: {"x-user": Prefix("admin-")})],
                route: [(destination: (host: "reviews", subset: "v3"))]),
            HttpRoute(name: "tenant-regex", match: [(headers: {"x-tenant": Regex("t[0-9]{2}")})],
                route: [(destination: (host: "reviews", subset: "v1"))]),
            HttpRoute(name: "scheme", match: [(scheme: Exact("https"), uri: Prefix("/secure"))],
                route: [(destination: (host: "reviews", subset: "v2"))]),
            HttpRoute(name: "method-regex", match: [(method: Regex("PUT|PATCH"))],
                route: [(destination: (host: "ratings"))]),
            HttpRoute(name: "rw-exact", match: [(uri: Exact("/exact-rw"))], rewrite: (uri: "/e"),
                route: [(destination: (host: "ratings"))]),
            HttpRoute(name: "rw-regex", match: [(uri: Regex("/rx/[0-9]+"))], rewrite: (uri: "/r"),
                route: [(destination: (host: "ratings"))]),
            HttpRoute(name: "rw-header", match: [(headers: {"x-rw": Exact("1")})], rewrite: (uri: "/hdr/"),
                route: [(destination: (host: "ratings"))]),
            HttpRoute(name: "redirect-q", match: [(uri: Prefix("/rq"))], redirect: (uri: "/new?y=2")),
            HttpRoute(name: "multi-a", match: [(headers: {"x-multi": Exact("a")})],
                route: [(destination: (host: "reviews", subset: "v1"))]),
            HttpRoute(name: "multi", match: [(headers: {"x-multi": Exact("a,b")})],
                route: [(destination: (host: "reviews", subset: "v2"))]),
            HttpRoute(name: "zero", match: [(uri: Prefix("/zero"))],
                route: [(destination: (host: "ratings"), weight: 0)]),
            HttpRoute(name: "deny-admin", match: [(uri: Prefix("/admin"))],
                direct_response: (status: 403, body: "denied")),
        ]),
        VirtualService(hosts: ["productpage"], http: [
            HttpRoute(name: "rw-all", match: [(uri: Prefix("/rw-all"))], rewrite: (uri: "/x"),
                route: [(destination: (host: "productpage"))]),
            HttpRoute(name: "nomatch-rw", rewrite: (uri: "/base/"),
                route: [(destination: (host: "productpage"))]),
        ]),
        VirtualService(hosts: ["ratings"], http: [
            HttpRoute(name: "all", route: [(destination: (host: "ratings"))]),
            HttpRoute(name: "unreachable", route: [(destination: (host: "reviews"))]),
        ]),
    ],
    destination_rules: [
        DestinationRule(host: "reviews", subsets: [
            (name: "v1", labels: {"version": "v1"}),
            (name: "v2", labels: {"version": "v2"}),
            (name: "v3", labels: {"version": "v3"}),
        ]),
    ],
)"#;

fn mesh() -> Arc<CompiledMesh> {
    let options = ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES);
    let config: MeshConfig = options.from_str(MESH).unwrap_or_else(|e| panic!("{e}"));
    let mut reg = Registry::default();
    let ep = |i: u32, v: &str| Endpoint {
        name: format!("reviews/{v}/{i}"),
        labels: BTreeMap::from([("version".to_owned(), v.to_owned())]),
    };
    reg.add_service("reviews", vec![ep(0, "v1"), ep(1, "v2"), ep(2, "v3")]);
    reg.add_service("ratings", vec![ep(3, "v1")]);
    reg.add_service("productpage", vec![ep(4, "v1")]);
    reg.add_service("details", vec![ep(5, "v1")]);
    Arc::new(CompiledMesh::compile(&config, &reg).unwrap_or_else(|e| panic!("{e}")))
}

/// What happened to a request: `service/version [route]` plus the forwarded path when it was
/// rewritten, or the local reply `status FLAGS [location|body]`.
fn route(
    proxy: &mut Proxy,
    id: u64,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut head = RequestHead::get(authority, path);
    head.method = method.into();
    if path.starts_with("/secure") {
        head.scheme = "https".into();
    }
    head.headers = headers
        .iter()
        .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
        .collect::<Vec<_>>()
        .into();
    let now = Time(id);
    proxy.handle_request(now, RequestId(id), head);
    let mut sent: Option<RequestHead> = None;
    let mut reply = String::new();
    while let Some(action) = proxy.poll_action() {
        match action {
            Action::Connect { conn, .. } => proxy.handle_connected(now, conn),
            Action::Send { attempt, head, .. } => {
                sent = Some(head);
                proxy.handle_response_head(now, attempt, ResponseHead { status: 200 });
                proxy.handle_attempt_end(now, attempt, AttemptEnd::Done);
            }
            Action::LocalReply {
                status,
                flags,
                headers,
                body,
                ..
            } => {
                reply = format!("{status} {flags}");
                if let Some((_, loc)) = headers.iter().find(|(n, _)| &**n == "location") {
                    reply += &format!(" {loc}");
                }
                if !body.is_empty() {
                    reply += &format!(" body={body}");
                }
            }
            Action::Complete { outcome, .. } => {
                if !reply.is_empty() {
                    return reply;
                }
                let mesh = proxy.config().clone();
                let d = &mesh.destinations()[outcome.destination.expect("destination").0 as usize];
                let route = &mesh.route(outcome.route.expect("route")).name;
                let mut out = format!("{}/{} [{route}]", d.service, d.version);
                let sent = sent.take().expect("sent");
                if &*sent.path != path {
                    out += &format!(" path={}", sent.path);
                }
                if &*sent.authority != authority {
                    out += &format!(" authority={}", sent.authority);
                }
                let hs: Vec<String> = sent
                    .headers
                    .iter()
                    .filter(|(k, _)| k.starts_with("x-"))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if !hs.is_empty() && path.starts_with("/hdr") {
                    out += &format!(" headers={}", hs.join(","));
                }
                return out;
            }
            _ => {}
        }
    }
    panic!("request {id} did not complete")
}

/// method, authority, path, headers, expected result.
type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn routing_table() {
    let mut proxy = Proxy::new(
        mesh(),
        ProxyRole::Client {
            name: "table".into(),
        },
        1,
    );
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // Header match, and precedence: the first route wins even when later ones match too.
        ("GET", "reviews", "/", &[("end-user", "jason")], "reviews/v2 [reviews/jason]"),
        ("GET", "reviews", "/v2", &[("end-user", "jason")], "reviews/v2 [reviews/jason]"),
        ("GET", "reviews", "/", &[("end-user", "Jason")], "404 NR"),
        ("GET", "reviews", "/", &[("end-user", "jason2")], "404 NR"),
        // Raw-string prefix: /v2 matches /v2example; case-sensitive.
        ("GET", "reviews", "/v2", &[], "reviews/v3 [reviews/prefix-v2]"),
        ("GET", "reviews", "/v2example", &[], "reviews/v3 [reviews/prefix-v2]"),
        ("GET", "reviews", "/v2/x?y=1", &[], "reviews/v3 [reviews/prefix-v2]"),
        ("GET", "reviews", "/V2", &[], "404 NR"),
        // Exact with ignore_uri_case; the query string is not part of an exact match.
        ("GET", "reviews", "/reviews/exact", &[], "reviews/v1 [reviews/exact-ci]"),
        ("GET", "reviews", "/REVIEWS/EXACT?x=1", &[], "reviews/v1 [reviews/exact-ci]"),
        ("GET", "reviews", "/reviews/exact/more", &[], "404 NR"),
        // Regex must match the whole path (query removed).
        ("GET", "reviews", "/items/42", &[], "reviews/v2 [reviews/regex]"),
        ("GET", "reviews", "/items/42?sort=asc", &[], "reviews/v2 [reviews/regex]"),
        ("GET", "reviews", "/items/42/extra", &[], "404 NR"),
        ("GET", "reviews", "/x/items/42", &[], "404 NR"),
        // without_headers: absent header matches, a different value matches, the value does not.
        ("GET", "reviews", "/w", &[], "reviews/v1 [reviews/without]"),
        ("GET", "reviews", "/w", &[("x-canary", "false")], "reviews/v1 [reviews/without]"),
        ("GET", "reviews", "/w", &[("x-canary", "true")], "404 NR"),
        // Presence match: any value, even empty.
        ("GET", "reviews", "/p", &[("x-debug", "")], "reviews/v3 [reviews/present]"),
        ("GET", "reviews", "/p", &[("x-debug", "1")], "reviews/v3 [reviews/present]"),
        ("GET", "reviews", "/p", &[("x-debugging", "1")], "404 NR"),
        // Query parameters: exact value.
        ("GET", "reviews", "/q?mode=beta", &[], "reviews/v2 [reviews/query]"),
        ("GET", "reviews", "/q?a=1&mode=beta", &[], "reviews/v2 [reviews/query]"),
        ("GET", "reviews", "/q?mode=beta2", &[], "404 NR"),
        ("GET", "reviews", "/q?mode", &[], "404 NR"),
        // OR across match blocks: method POST, or authority with the port.
        ("POST", "reviews", "/anything", &[], "reviews/v3 [reviews/or]"),
        ("GET", "reviews:9080", "/anything", &[], "reviews/v3 [reviews/or]"),
        ("post", "reviews", "/anything", &[], "404 NR"),
        // Redirects: default 301 keeps the rest; 302 with new scheme and authority.
        ("GET", "reviews", "/old/page", &[], "301 - http://reviews/new"),
        ("GET", "reviews", "/moved", &[], "302 - https://reviews.example.com/moved"),
        // Direct response.
        ("GET", "reviews", "/healthz", &[], "200 - body=ok"),
        // Rewrites: the matched prefix is replaced, the rest (query included) kept.
        ("GET", "reviews", "/api/ratings/1?v=2", &[], "ratings/v1 [reviews/rewrite] path=/ratings/1?v=2"),
        ("GET", "reviews", "/auth/x", &[], "ratings/v1 [reviews/rewrite-auth] authority=ratings.internal"),
        // Undefined subset: 503 NC.
        ("GET", "reviews", "/nc", &[], "503 NC"),
        // Header operations on the forwarded request.
        ("GET", "reviews", "/hdr", &[("x-c", "gone"), ("x-b", "1")], "reviews/v1 [reviews/hdr] headers=x-b=1,2,x-a=1"),
        // Header prefix and whole-value regex.
        ("GET", "reviews", "/u", &[("x-user", "admin-bob")], "reviews/v3 [reviews/user-prefix]"),
        ("GET", "reviews", "/u", &[("x-user", "bob-admin-")], "404 NR"),
        ("GET", "reviews", "/t", &[("x-tenant", "t42")], "reviews/v1 [reviews/tenant-regex]"),
        ("GET", "reviews", "/t", &[("x-tenant", "t421")], "404 NR"),
        // Scheme and method regex.
        ("GET", "reviews", "/secure/a", &[], "reviews/v2 [reviews/scheme]"),
        ("PUT", "reviews", "/m", &[], "ratings/v1 [reviews/method-regex]"),
        ("PATCH", "reviews", "/m", &[], "ratings/v1 [reviews/method-regex]"),
        ("DELETE", "reviews", "/m", &[], "404 NR"),
        // A catch-all route makes later routes unreachable.
        ("GET", "ratings", "/anything", &[], "ratings/v1 [ratings/all]"),
        // No virtual service: the service's default route; unknown host: 404 NR.
        ("GET", "details", "/", &[], "details/v1 [details/default]"),
        ("GET", "details:9080", "/x", &[], "details/v1 [details/default]"),
        ("GET", "nosuch", "/", &[], "404 NR"),
        // rewrite.uri replaces only what matched (Envoy's prefix_rewrite): an exact or regex
        // match the whole path, the query kept; a match without `uri` (or none) the leading `/`.
        ("GET", "reviews", "/exact-rw?k=1", &[], "ratings/v1 [reviews/rw-exact] path=/e?k=1"),
        ("GET", "reviews", "/rx/12?k=1", &[], "ratings/v1 [reviews/rw-regex] path=/r?k=1"),
        ("GET", "reviews", "/foo/bar?z=1", &[("x-rw", "1")], "ratings/v1 [reviews/rw-header] path=/hdr/foo/bar?z=1"),
        ("GET", "productpage", "/rw-all/a?q=1", &[], "productpage/v1 [productpage/rw-all] path=/x/a?q=1"),
        ("GET", "productpage", "/foo/bar?z=1", &[], "productpage/v1 [productpage/nomatch-rw] path=/base/foo/bar?z=1"),
        // A redirect keeps the query unless its own uri has one.
        ("GET", "reviews", "/old/page?x=1", &[], "301 - http://reviews/new?x=1"),
        ("GET", "reviews", "/rq?x=1", &[], "301 - http://reviews/new?y=2"),
        // Virtual hosts match without regard to case.
        ("GET", "REVIEWS", "/v2", &[], "reviews/v3 [reviews/prefix-v2]"),
        ("GET", "Details:9080", "/", &[], "details/v1 [details/default]"),
        // A header sent twice is matched as its values joined with `,`.
        ("GET", "reviews", "/mh", &[("x-multi", "a"), ("x-multi", "b")], "reviews/v2 [reviews/multi]"),
        ("GET", "reviews", "/mh", &[("x-multi", "a")], "reviews/v1 [reviews/multi-a]"),
        ("GET", "reviews", "/mh", &[("x-multi", "b"), ("x-multi", "a")], "404 NR"),
        // A lone destination takes all the traffic, even with weight 0.
        ("GET", "reviews", "/zero", &[], "ratings/v1 [reviews/zero]"),
        // Paths are normalized before matching (Istio's default, BASE): dot segments,
        // backslashes and unreserved escapes cannot route around a prefix.
        ("GET", "reviews", "/admin/x", &[], "403 - body=denied"),
        ("GET", "reviews", "/./admin", &[], "403 - body=denied"),
        ("GET", "reviews", "/x/../admin", &[], "403 - body=denied"),
        ("GET", "reviews", "/v2/%2E%2E/admin", &[], "403 - body=denied"),
        ("GET", "reviews", "/%61dmin", &[], "403 - body=denied"),
        ("GET", "reviews", r"/x\..\admin", &[], "403 - body=denied"),
        // ... and the normalized path is what goes upstream; `//` is not merged by default.
        ("GET", "reviews", "/v2/a/../b", &[], "reviews/v3 [reviews/prefix-v2] path=/v2/b"),
        ("GET", "reviews", "//admin", &[], "404 NR"),
    ];
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for (i, (method, authority, path, headers, want)) in cases.iter().enumerate() {
        let got = route(&mut proxy, i as u64, method, authority, path, headers);
        if got != *want {
            failures.push(format!(
                "{method} {authority}{path} {headers:?}\n   want {want}\n    got {got}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Envoy can only send 301, 302, 303, 307 and 308 as a redirect; anything else is rejected
/// when the mesh is compiled, naming the field.
#[test]
fn redirect_codes_envoy_cannot_send_are_rejected() {
    let mut reg = Registry::default();
    reg.add_service(
        "web",
        vec![Endpoint {
            name: "web/-/0".into(),
            labels: BTreeMap::new(),
        }],
    );
    let options = ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES);
    let compile = |code: u16| {
        let text = format!(
            r#"Mesh(virtual_services: [VirtualService(hosts: ["web"], http: [
                HttpRoute(redirect: (uri: "/x", redirect_code: {code}))])])"#
        );
        let config: MeshConfig = options.from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        CompiledMesh::compile(&config, &reg)
    };
    for ok in [301, 302, 303, 307, 308] {
        assert!(compile(ok).is_ok(), "{ok} is a redirect Envoy sends");
    }
    for bad in [200, 300, 304, 305, 306, 309, 404] {
        let err = compile(bad).expect_err("rejected").to_string();
        assert!(
            err.contains("virtual_services[0].http[0].redirect.redirect_code"),
            "{err}"
        );
        assert!(err.contains("301, 302, 303, 307 or 308"), "{err}");
    }
}

/// A request that matches no route is reported under its host's `(no route)` route, or
/// `(unknown host)`, so a 404 `NR` at any hop has a row in the report.
#[test]
fn unmatched_requests_are_reported_under_a_named_route() {
    let mesh = mesh();
    let mut proxy = Proxy::new(mesh.clone(), ProxyRole::Client { name: "t".into() }, 1);
    for (i, (authority, path, want)) in [
        ("reviews", "/nothing-matches", "reviews/(no route)"),
        ("REVIEWS", "/nothing-matches", "reviews/(no route)"),
        ("nosuch", "/", "(unknown host)"),
    ]
    .into_iter()
    .enumerate()
    {
        proxy.handle_request(
            Time(i as u64),
            RequestId(i as u64),
            RequestHead::get(authority, path),
        );
        let outcome = std::iter::from_fn(|| proxy.poll_action())
            .find_map(|a| match a {
                Action::Complete { outcome, .. } => Some(outcome),
                _ => None,
            })
            .expect("completes");
        assert_eq!(
            (outcome.status, outcome.flags.to_string()),
            (404, "NR".to_string())
        );
        let route = outcome.route.expect("reported under a route");
        assert_eq!(mesh.route(route).name, want, "{authority}{path}");
    }
}
