//! Istio's Bookinfo tasks in the simulator (`scenarios/bookinfo.ron` plus each task's
//! VirtualServices, from Istio's samples/bookinfo/networking): each outcome as the istio.io
//! task page describes it — request routing, traffic shifting, fault injection and request
//! timeouts. Shares are checked within five binomial standard errors; latencies against the
//! timeouts and delays that make them.

use crate::common::{run, scenario};
use metrics::{RunMetrics, Stats};
use proxy_engine::config::VirtualService;

fn bookinfo() -> sim_core::Scenario {
    let path = format!("{}/../scenarios/bookinfo.ron", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    scenario(&text)
}

/// Bookinfo with these VirtualServices (RON) added, run.
fn with(virtual_services: &[&str]) -> RunMetrics {
    let mut s = bookinfo();
    let options = ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES);
    for vs in virtual_services {
        let vs: VirtualService = options.from_str(vs).unwrap_or_else(|e| panic!("{e}"));
        s.mesh.virtual_services.push(vs);
    }
    let text = ron::to_string(&s).expect("serializes");
    sim_core::load::validate("bookinfo.ron", &text, &s).unwrap_or_else(|e| panic!("{e}"));
    run(&s)
}

const ALL_V1: &str = r#"VirtualService(hosts: ["reviews"], http: [HttpRoute(route: [(destination: (host: "reviews", subset: "v1"))])])"#;
const RATINGS_V1: &str = r#"VirtualService(hosts: ["ratings"], http: [HttpRoute(route: [(destination: (host: "ratings", subset: "v1"))])])"#;
const JASON_V2: &str = r#"VirtualService(hosts: ["reviews"], http: [
    HttpRoute(match: [(headers: {"end-user": Exact("jason")})], route: [(destination: (host: "reviews", subset: "v2"))]),
    HttpRoute(route: [(destination: (host: "reviews", subset: "v1"))])])"#;

fn destination<'a>(m: &'a RunMetrics, name: &str) -> Option<&'a Stats> {
    m.destinations
        .iter()
        .find(|(d, _)| d == name)
        .map(|(_, s)| s)
}

fn count(m: &RunMetrics, name: &str) -> u64 {
    destination(m, name).map_or(0, |s| s.count)
}

fn workload<'a>(m: &'a RunMetrics, name: &str) -> &'a Stats {
    (m.workloads.iter().find(|(w, _)| w == name))
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no workload {name}"))
}

fn seconds(s: &Stats, q: f64) -> f64 {
    s.latency.value_at_quantile(q) as f64 / 1e9
}

/// `mine` of `all` is `p` within five binomial standard errors.
fn share_is(mine: u64, all: u64, p: f64) {
    let sd = (p * (1.0 - p) * all as f64).sqrt();
    assert!(
        (mine as f64 - p * all as f64).abs() <= 5.0 * sd + 1e-9,
        "{mine} of {all}, expected a share of {p}"
    );
}

fn pages_all_ok(m: &RunMetrics) {
    assert_eq!(m.totals.success, m.totals.count, "every page answers");
    assert_eq!(m.totals.by_status, vec![(200, m.totals.count)]);
}

/// Without a VirtualService for reviews, its calls are balanced over the three versions and
/// v2 and v3 call ratings; every page is served.
#[test]
fn default_routing_balances_reviews_over_its_versions() {
    let m = with(&[]);
    pages_all_ok(&m);
    let reviews = count(&m, "reviews/v1") + count(&m, "reviews/v2") + count(&m, "reviews/v3");
    assert_eq!(reviews, m.totals.count, "one reviews call per page");
    assert_eq!(count(&m, "details/v1"), m.totals.count);
    assert_eq!(
        count(&m, "ratings/v1"),
        count(&m, "reviews/v2") + count(&m, "reviews/v3")
    );
    assert!(count(&m, "reviews/v1") > 0 && count(&m, "reviews/v2") > 0);
}

/// Request routing: virtual-service-all-v1 sends every page to reviews v1, which calls
/// nothing; reviews-test-v2 sends jason's pages to v2 (stars), everyone else's to v1.
#[test]
fn request_routing_all_v1_then_jason_to_v2() {
    let m = with(&[ALL_V1, RATINGS_V1]);
    pages_all_ok(&m);
    assert_eq!(count(&m, "reviews/v1"), m.totals.count);
    assert_eq!(count(&m, "ratings/v1"), 0, "v1 shows no stars");
    let m = with(&[JASON_V2, RATINGS_V1]);
    pages_all_ok(&m);
    let jason = workload(&m, "jason").count;
    assert_eq!(count(&m, "reviews/v2"), jason);
    assert_eq!(count(&m, "reviews/v1"), m.totals.count - jason);
    assert_eq!(count(&m, "ratings/v1"), jason, "only jason sees stars");
}

/// Traffic shifting: virtual-service-reviews-50-v3 and -80-20.
#[test]
fn traffic_shifting_splits_reviews_by_weight() {
    let split = |a: &str, wa: u32, b: &str, wb: u32| {
        format!(
            r#"VirtualService(hosts: ["reviews"], http: [HttpRoute(route: [
                (destination: (host: "reviews", subset: "{a}"), weight: {wa}),
                (destination: (host: "reviews", subset: "{b}"), weight: {wb})])])"#
        )
    };
    let m = with(&[&split("v1", 50, "v3", 50)]);
    pages_all_ok(&m);
    share_is(count(&m, "reviews/v3"), m.totals.count, 0.5);
    assert_eq!(count(&m, "reviews/v2"), 0);
    let m = with(&[&split("v1", 80, "v2", 20)]);
    share_is(count(&m, "reviews/v2"), m.totals.count, 0.2);
    assert_eq!(count(&m, "reviews/v3"), 0);
}

/// Fault injection, delay: ratings delayed 7 s for jason (virtual-service-ratings-test-delay
/// with reviews-test-v2). reviews v2 would wait 10 s for ratings, but productpage gives
/// reviews 3 s and one retry: jason's page comes after about 6 s with "reviews unavailable"
/// (still a 200), as the task says; everyone else is unaffected.
#[test]
fn fault_injection_delay_makes_jasons_page_time_out_on_reviews() {
    let delay = r#"VirtualService(hosts: ["ratings"], http: [
        HttpRoute(match: [(headers: {"end-user": Exact("jason")})],
            fault: (delay: (percentage: 100.0, fixed_delay: "7s")),
            route: [(destination: (host: "ratings", subset: "v1"))]),
        HttpRoute(route: [(destination: (host: "ratings", subset: "v1"))])])"#;
    let m = with(&[JASON_V2, delay]);
    pages_all_ok(&m);
    let jason = workload(&m, "jason");
    // Two tries of 3 s each, plus the page's own few milliseconds.
    assert!(seconds(jason, 0.01) >= 6.0, "{}", seconds(jason, 0.01));
    assert!(seconds(jason, 0.99) < 6.2, "{}", seconds(jason, 0.99));
    assert!(seconds(workload(&m, "visitors"), 0.99) < 0.1);
    let reviews_v2 = destination(&m, "reviews/v2").expect("v2 called");
    assert_eq!(
        reviews_v2.count,
        2 * jason.count,
        "productpage tries reviews twice"
    );
    let jason_route = (m.routes.iter())
        .find(|(r, _)| r == "reviews/0")
        .map(|(_, s)| s)
        .expect("jason's reviews route");
    let abandoned = jason_route
        .flags()
        .find(|(f, _)| *f == "DC")
        .map(|(_, n)| n);
    assert_eq!(
        abandoned,
        Some(2 * jason.count),
        "each abandoned try is recorded at productpage's sidecar as DC"
    );
}

/// Fault injection, abort: ratings answers 500 for jason (virtual-service-ratings-test-abort);
/// reviews v2 shows "ratings unavailable" and the page still loads.
#[test]
fn fault_injection_abort_degrades_ratings_only() {
    let abort = r#"VirtualService(hosts: ["ratings"], http: [
        HttpRoute(match: [(headers: {"end-user": Exact("jason")})],
            fault: (abort: (percentage: 100.0, http_status: 500)),
            route: [(destination: (host: "ratings", subset: "v1"))]),
        HttpRoute(route: [(destination: (host: "ratings", subset: "v1"))])])"#;
    let m = with(&[JASON_V2, abort]);
    pages_all_ok(&m);
    let jason = workload(&m, "jason").count;
    let routes: Vec<_> = m
        .routes
        .iter()
        .filter(|(r, _)| r.starts_with("ratings/"))
        .collect();
    let aborted: u64 = routes
        .iter()
        .map(|(_, s)| {
            s.by_status
                .iter()
                .filter(|(st, _)| *st == 500)
                .map(|(_, n)| n)
                .sum::<u64>()
        })
        .sum();
    assert_eq!(aborted, jason, "every ratings call of jason's is aborted");
    assert_eq!(count(&m, "ratings/v1"), 0, "aborted before any instance");
    let v2 = destination(&m, "reviews/v2").expect("v2 called");
    assert_eq!(v2.success, v2.count, "reviews v2 degrades, answers 200");
    assert!(seconds(workload(&m, "jason"), 0.99) < 0.1);
}

/// Request timeouts: reviews routed to v2, ratings delayed 2 s: pages about 2 s slower; then
/// a 0.5 s timeout on reviews: the page answers in about 1 s (productpage tries reviews twice,
/// each cut at 0.5 s with a 504) with reviews unavailable.
#[test]
fn request_timeouts_cut_the_ratings_delay() {
    let v2 = |timeout: &str| {
        format!(
            r#"VirtualService(hosts: ["reviews"], http: [HttpRoute({timeout}
                route: [(destination: (host: "reviews", subset: "v2"))])])"#
        )
    };
    let delay = r#"VirtualService(hosts: ["ratings"], http: [HttpRoute(
        fault: (delay: (percentage: 100.0, fixed_delay: "2s")),
        route: [(destination: (host: "ratings", subset: "v1"))])])"#;
    let m = with(&[&v2(""), delay]);
    pages_all_ok(&m);
    let (low, high) = (seconds(&m.totals, 0.01), seconds(&m.totals, 0.99));
    assert!(low >= 2.0 && high < 2.2, "pages in {low}..{high} s");
    let m = with(&[&v2(r#"timeout: "500ms","#), delay]);
    pages_all_ok(&m);
    let (low, high) = (seconds(&m.totals, 0.01), seconds(&m.totals, 0.99));
    assert!(low >= 1.0 && high < 1.2, "pages in {low}..{high} s");
    let reviews = (m.routes.iter())
        .find(|(r, _)| r == "reviews/0")
        .map(|(_, s)| s)
        .expect("reviews route");
    assert_eq!(
        reviews
            .by_status
            .iter()
            .find(|(s, _)| *s == 504)
            .map(|(_, n)| *n),
        Some(2 * m.totals.count),
        "two 504 UT per page"
    );
}
