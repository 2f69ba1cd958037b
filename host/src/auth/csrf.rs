//! CSRF defence for cookie-authenticated writes: an unsafe method that carries our auth
//! cookies and no `Authorization` header must come from an allowed origin — the service's
//! own (the request's `Host`) or one in the CORS allowlist. `SameSite=Lax` already stops
//! most cross-site posts; this closes the rest (sibling subdomains, old browsers).
//! A cookie-authenticated write with neither `Origin` nor `Referer` is refused too: every
//! current browser sends `Origin` on such requests, and scripts should use Bearer tokens.

use axum::{
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{ACCESS_COOKIE, REFRESH_COOKIE};
use crate::{http::error::ApiError, state::AppState};

/// Middleware enforcing the origin check.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if needs_check(request.method(), request.headers())
        && !origin_allowed(request.headers(), &state.allowed_origins)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "CSRF_ORIGIN_MISMATCH",
            "cookie-authenticated writes must come from an allowed origin",
        )
        .into_response();
    }
    next.run(request).await
}

fn needs_check(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return false;
    }
    if headers.contains_key(header::AUTHORIZATION) {
        return false;
    }
    let jar = axum_extra::extract::CookieJar::from_headers(headers);
    jar.get(ACCESS_COOKIE).is_some() || jar.get(REFRESH_COOKIE).is_some()
}

fn origin_allowed(headers: &HeaderMap, allowlist: &[String]) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            let referer = headers.get(header::REFERER)?.to_str().ok()?;
            Some(
                url::Url::parse(referer)
                    .ok()?
                    .origin()
                    .ascii_serialization(),
            )
        });
    let Some(origin) = origin else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if allowlist.iter().any(|allowed| allowed == origin) {
        return true;
    }
    // Same origin: the origin's authority equals the Host the request was sent to.
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (url::Url::parse(origin), host) {
        (Ok(url), Some(host)) => {
            let authority = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => return false,
            };
            authority.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_and_allowlist_pass_others_fail() {
        let allow = vec!["https://shop.example.com".to_owned()];
        let same = headers(&[
            ("host", "127.0.0.1:8000"),
            ("origin", "http://127.0.0.1:8000"),
        ]);
        assert!(origin_allowed(&same, &allow));
        let listed = headers(&[
            ("host", "api.example.com"),
            ("origin", "https://shop.example.com"),
        ]);
        assert!(origin_allowed(&listed, &allow));
        let evil = headers(&[
            ("host", "127.0.0.1:8000"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!origin_allowed(&evil, &allow));
        let none = headers(&[("host", "127.0.0.1:8000")]);
        assert!(!origin_allowed(&none, &allow));
        let referer = headers(&[
            ("host", "127.0.0.1:8000"),
            ("referer", "http://127.0.0.1:8000/x"),
        ]);
        assert!(origin_allowed(&referer, &allow));
    }

    #[test]
    fn only_cookie_writes_are_checked() {
        let cookie = headers(&[("cookie", "access_token=x")]);
        assert!(needs_check(&Method::POST, &cookie));
        assert!(!needs_check(&Method::GET, &cookie));
        let bearer = headers(&[("cookie", "access_token=x"), ("authorization", "Bearer y")]);
        assert!(!needs_check(&Method::POST, &bearer));
        assert!(!needs_check(&Method::POST, &HeaderMap::new()));
    }
}
