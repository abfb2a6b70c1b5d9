//! Behind the optional rate-limited front (template.yaml, `RateLimitedFront=true`: CloudFront
//! with a WAF rate-based rule), two things change.
//!
//! - **Only the front gets in.** The API's own execute-api URL stays reachable (CloudFront needs
//!   it as its origin, and IAM callers sign for it), so the front adds a secret header
//!   ([`ORIGIN_HEADER`], its value from Secrets Manager) to every request it forwards, and a
//!   request on a public route without it is answered as if the route did not exist (404):
//!   nobody can go around the front's rate limit. Two kinds of route are exempt. IAM-authorised
//!   routes (`/internal/…`) are signed for the API's own host and never go through the front;
//!   API Gateway has checked their signature. The signed links of emails (`/unsubscribe`,
//!   `/confirm`) are checked by their HMAC, create nothing, and may point at the API's own URL
//!   in emails already sent (a `PublicBaseUrl` from before the front): an unsubscribe link must
//!   keep working wherever it points.
//! - **The client's address is the front's word for it.** Behind CloudFront the request
//!   context's `sourceIp` is an edge server's; the viewer's address (consent evidence) comes
//!   from the header the front sets (`CloudFront-Viewer-Address: <ip>:<port>`), trusted only on a
//!   request that carried the origin secret, so it cannot be forged by going around the front.

use std::net::IpAddr;

use lambda_http::http::HeaderName;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use leadflow_aws::secrets::SecretString;

/// The header the front adds with the origin secret (CloudFront replaces a viewer's own).
pub const ORIGIN_HEADER: &str = "x-origin-verify";

/// How intake sits behind the front; `Default`: no front.
#[derive(Debug, Clone, Default)]
pub struct Front {
    /// The value of [`ORIGIN_HEADER`]; set: public routes refuse requests without it.
    pub origin_secret: Option<SecretString>,
    /// The header the front puts the viewer's address in (`CloudFront-Viewer-Address`).
    pub client_ip_header: Option<HeaderName>,
}

/// Put on a request by [`Front::admit`]: its client address is in this header.
#[derive(Debug, Clone)]
pub(crate) struct TrustedClientIpHeader(pub HeaderName);

impl Front {
    /// The request, if it may be answered (`None`: a public route not reached through the
    /// front), marked with the header its client address is to be read from.
    pub fn admit(&self, mut req: Request) -> Option<Request> {
        let through_front = match &self.origin_secret {
            None => true,
            Some(secret) => req
                .headers()
                .get(ORIGIN_HEADER)
                .is_some_and(|v| secret.matches(v.as_bytes())),
        };
        if through_front {
            if let Some(h) = &self.client_ip_header {
                req.extensions_mut().insert(TrustedClientIpHeader(h.clone()));
            }
            return Some(req);
        }
        (iam_authorised(&req) || signed_link(&req)).then_some(req)
    }
}

/// `/unsubscribe` and `/confirm`: authorised by the HMAC of their token, not by the front.
fn signed_link(req: &Request) -> bool {
    let path = req.raw_http_path();
    let path = path.trim_end_matches('/');
    path.ends_with("/unsubscribe") || path.ends_with("/confirm")
}

/// API Gateway checked this request's SigV4 signature (an `AWS_IAM` route).
fn iam_authorised(req: &Request) -> bool {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().is_some_and(|a| a.iam.is_some()),
        _ => false,
    }
}

/// The address in a `CloudFront-Viewer-Address` value: `<ip>:<port>`, the IPv6 address bare
/// (`2001:db8::1:443`) or bracketed (`[2001:db8::1]:443`); a value without a port is taken
/// whole. `None` for anything else.
pub fn viewer_address(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    let with_port = value
        .rsplit_once(':')
        .filter(|(_, port)| !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(ip, _)| {
            let ip = ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')).unwrap_or(ip);
            ip.parse().ok()
        });
    with_port.or_else(|| {
        value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(value)
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_viewer_address_loses_its_port_in_either_family() {
        for (value, ip) in [
            ("198.51.100.10:46532", "198.51.100.10"),
            (" 198.51.100.10:443 ", "198.51.100.10"),
            ("2001:db8::1:46532", "2001:db8::1"),
            ("2001:db8:0:0:0:0:0:7:443", "2001:db8::7"),
            ("[2001:db8::1]:46532", "2001:db8::1"),
            ("2001:db8:::8080", "2001:db8::"),
            ("::ffff:192.0.2.1:1234", "::ffff:192.0.2.1"),
            ("198.51.100.10", "198.51.100.10"),
            ("[2001:db8::2]", "2001:db8::2"),
        ] {
            assert_eq!(viewer_address(value), Some(ip.parse().unwrap()), "{value}");
        }
        for junk in [
            "",
            ":443",
            "example.jp:443",
            "1.2.3:443",
            "[2001:db8::1]:",
            "198.51.100.10:port",
            "[::1",
        ] {
            assert_eq!(viewer_address(junk), None, "{junk}");
        }
    }

    fn request(headers: &[(&str, &str)], iam: bool) -> Request {
        request_to("/forms/demo/submissions", headers, iam)
    }

    fn request_to(path: &str, headers: &[(&str, &str)], iam: bool) -> Request {
        let mut event = serde_json::json!({
            "version": "2.0", "routeKey": "POST /forms/{formId}/submissions", "rawPath": "/forms/demo/submissions",
            "rawQueryString": "", "headers": {},
            "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "d", "domainPrefix": "d",
                "http": {"method": "POST", "path": "/forms/demo/submissions", "protocol": "HTTP/1.1", "sourceIp": "130.176.0.1", "userAgent": ""},
                "requestId": "r", "routeKey": "POST /forms/{formId}/submissions", "stage": "$default",
                "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0},
            "isBase64Encoded": false, "body": ""
        });
        for (k, v) in headers {
            event["headers"][k] = serde_json::Value::String((*v).into());
        }
        event["rawPath"] = path.into();
        event["requestContext"]["http"]["path"] = path.into();
        if iam {
            event["requestContext"]["authorizer"] =
                serde_json::json!({"iam": {"userArn": "arn:aws:iam::123456789012:user/x"}});
        }
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    fn behind_front() -> Front {
        Front {
            origin_secret: Some(SecretString::new("s3cret-from-secrets-manager")),
            client_ip_header: Some(HeaderName::from_static("cloudfront-viewer-address")),
        }
    }

    #[test]
    fn behind_the_front_public_routes_need_its_header_and_then_trust_its_viewer_address() {
        let front = behind_front();
        let viewer = ("cloudfront-viewer-address", "203.0.113.9:5555");
        assert!(front.admit(request(&[viewer], false)).is_none(), "around the front");
        assert!(front
            .admit(request(
                &[viewer, (ORIGIN_HEADER, "s3cret-from-secrets-manager!")],
                false
            ))
            .is_none());
        let through = front
            .admit(request(
                &[viewer, (ORIGIN_HEADER, "s3cret-from-secrets-manager")],
                false,
            ))
            .expect("through the front");
        assert_eq!(crate::source_ip(&through).as_deref(), Some("203.0.113.9"));
        // IAM callers sign for the API's own host: admitted, their own address kept.
        let iam = front.admit(request(&[viewer], true)).expect("IAM-authorised");
        assert_eq!(crate::source_ip(&iam).as_deref(), Some("130.176.0.1"));
        // Emails' signed links work wherever they point, with the caller's own address.
        for path in ["/unsubscribe", "/confirm"] {
            let link = front.admit(request_to(path, &[viewer], false)).expect("a signed link");
            assert_eq!(crate::source_ip(&link).as_deref(), Some("130.176.0.1"), "{path}");
        }
        assert!(front.admit(request_to("/events", &[], false)).is_none());
    }

    #[test]
    fn without_a_front_every_request_is_admitted_with_the_contexts_address() {
        let req = Front::default()
            .admit(request(&[("cloudfront-viewer-address", "203.0.113.9:5555")], false))
            .unwrap();
        assert_eq!(
            crate::source_ip(&req).as_deref(),
            Some("130.176.0.1"),
            "a header anyone can send"
        );
        // Behind the front, a header that cannot be read leaves the context's address.
        let front = behind_front();
        let req = front
            .admit(request(
                &[
                    ("cloudfront-viewer-address", "garbage"),
                    (ORIGIN_HEADER, "s3cret-from-secrets-manager"),
                ],
                false,
            ))
            .unwrap();
        assert_eq!(crate::source_ip(&req).as_deref(), Some("130.176.0.1"));
    }
}
